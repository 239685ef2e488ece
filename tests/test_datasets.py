"""Datasets: IDX parsing, checksums, bad input, generators, mixtures, CIFAR-10, determinism."""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest
from conftest import idx_bytes

from nn_clustering import cli
from nn_clustering.data import build, parsers, synthetic
from nn_clustering.data import raw as raw_files
from nn_clustering.errors import DatasetError


def leftovers(folder):
    """Temporary or partial files anywhere under ``folder``."""
    return [p for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith(".")]


# ----------------------------------------------------------------------------- IDX


def test_parse_idx_reads_hand_written_file():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    out = parsers.parse_idx(idx_bytes(images))
    assert out.shape == (2, 28, 28) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)
    labels = np.array([7, 0, 9], np.uint8)
    np.testing.assert_array_equal(parsers.parse_idx(idx_bytes(labels)), labels)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic"),
        (idx_bytes(np.zeros((3, 2), np.uint8))[:-1], "truncated or corrupt"),
        (b"\x00\x00\x08\x03\x00\x00", "header is truncated"),
    ],
)
def test_parse_idx_rejects_damaged_bytes(data, message):
    with pytest.raises(DatasetError, match=message):
        parsers.parse_idx(data, "x.idx")


def test_truncated_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    full = gzip.compress(idx_bytes(np.ones((10, 28, 28), np.uint8)))
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: gzip stream is truncated"):
        parsers.read_idx_gz(path)


def test_load_idx_dataset_matches_written_arrays(fake_mirror):
    data = parsers.load_idx_dataset(fake_mirror["mirror"] / "mnist")
    arrays = fake_mirror["arrays"]
    np.testing.assert_array_equal(data.x_train, arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte.gz"])


# ----------------------------------------------------------------------------- raw files


def test_fetch_raw_copies_from_mirror_and_verifies(fake_mirror, tmp_path):
    raw = raw_files.RAW_FILES["mnist"]["t10k-labels-idx1-ubyte.gz"]
    path = raw_files.fetch_raw(raw, tmp_path / "cache")
    assert path == tmp_path / "cache" / "mnist" / raw.name
    assert hashlib.md5(path.read_bytes()).hexdigest() == raw.md5


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_bad_mirror_file_fails_clearly_and_leaves_nothing(fake_mirror, tmp_path, damage):
    mirror_file = fake_mirror["mirror"] / "mnist" / "train-images-idx3-ubyte.gz"
    good = mirror_file.read_bytes()
    if damage == "corrupt":
        mirror_file.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    else:
        mirror_file.write_bytes(good[: len(good) // 3])
    out = tmp_path / "out"
    with pytest.raises(DatasetError) as info:
        build.build_all(("mnist",), out, log=lambda _: None)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "md5" in message
    assert "replace it in the mirror" in message and "\n" not in message
    assert not (out / "mnist.npz").exists()
    assert not (out / "raw" / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert leftovers(out) == []
    # after the fix, a re-run succeeds
    mirror_file.write_bytes(good)
    report = build.build_all(("mnist",), out, log=lambda _: None)
    assert report.built == ["mnist"]
    assert build.load_dataset("mnist", out).x_train.shape == (50, 28, 28)


def test_corrupt_cache_file_is_replaced(fake_mirror, tmp_path):
    raw = raw_files.RAW_FILES["mnist"]["t10k-labels-idx1-ubyte.gz"]
    cached = tmp_path / "cache" / "mnist" / raw.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"garbage")
    raw_files.fetch_raw(raw, tmp_path / "cache")
    assert hashlib.md5(cached.read_bytes()).hexdigest() == raw.md5


def test_unreadable_mirror_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(raw_files.MIRROR_ENV, str(tmp_path / "does-not-exist"))
    with pytest.raises(DatasetError, match="NN_CLUSTERING_DATA_MIRROR=.* is not a readable folder"):
        raw_files.fetch_raw(raw_files.RAW_FILES["mnist"]["t10k-labels-idx1-ubyte.gz"], tmp_path)


def test_missing_source_is_skipped_with_one_line(fake_mirror, tmp_path):
    (fake_mirror["mirror"] / "cifar-10" / raw_files.CIFAR_ARCHIVE).unlink()
    lines = []
    report = build.build_all(("line", "cifar10", "line-cifar10"), tmp_path, log=lines.append)
    assert report.built == ["line"]
    assert set(report.skipped) == {"cifar10", "line-cifar10"}
    skip_lines = [line for line in lines if line.startswith("skipped")]
    assert len(skip_lines) == 2 and all("cifar" in line for line in skip_lines)
    assert "\n" not in skip_lines[0]
    assert (tmp_path / "MANIFEST").read_text().count("\n") == 1


def test_unknown_name_is_a_clear_error_and_cli_prints_one_line(tmp_path, capsys):
    with pytest.raises(DatasetError, match="unknown dataset name 'mnsit'.*mnist"):
        build.parse_name("mnsit")
    assert cli.main(["datasets", "mnsit", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset name") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_corrupt_npz_gives_clear_error(tmp_path):
    (tmp_path / "line.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match="line.npz is corrupt.*nn-clustering datasets line"):
        build.load_dataset("line", tmp_path)
    with pytest.raises(DatasetError, match="random.npz not found; run `make datasets`"):
        build.load_dataset("random", tmp_path)


# ----------------------------------------------------------------------------- generators


def count_lines(image: np.ndarray) -> int:
    """Number of full-height white columns, checking that nothing else is lit."""
    white_columns = np.all(image == 255, axis=0)
    assert np.all(image[:, ~white_columns] == 0)
    return int(white_columns.sum())


def test_line_labels_equal_number_of_lines_minus_one():
    data = synthetic.make_line(seed=3, n_train=2000, n_test=300)
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        counted = np.array([count_lines(img) for img in x])
        np.testing.assert_array_equal(y, counted - 1)
        assert counted.min() == 1 and counted.max() == 10
    # every count from 1 to 10 appears with roughly equal frequency
    frequencies = np.bincount(data.y_train, minlength=10) / len(data.y_train)
    assert np.all(np.abs(frequencies - 0.1) < 0.03)


def test_random_dataset_ranges():
    data = synthetic.make_random(seed=1, n_train=5000, n_test=100)
    assert data.x_train.dtype == np.uint8 and data.x_train.shape == (5000, 28, 28)
    assert data.x_train.min() == 0 and data.x_train.max() == 255
    assert set(np.unique(data.y_train)) == set(range(10))


@pytest.mark.parametrize("separated", [False, True])
def test_mixture_invariants(separated):
    a = synthetic.make_line(seed=1, n_train=300, n_test=60)
    b = synthetic.make_random(seed=2, n_train=200, n_test=40)
    m = synthetic.mix(a, b, np.random.default_rng(0), separated=separated)
    for split in ("train", "test"):
        xa, ya = getattr(a, f"x_{split}"), getattr(a, f"y_{split}")
        xb, yb = getattr(b, f"x_{split}"), getattr(b, f"y_{split}")
        x, y, src = getattr(m, f"x_{split}"), getattr(m, f"y_{split}"), getattr(m, f"source_{split}")
        if separated:
            xa, ya, xb, yb = xa[ya < 5], ya[ya < 5], xb[yb >= 5], yb[yb >= 5]
            assert np.all(y[~src] < 5) and np.all(y[src] >= 5)
        assert len(x) == len(y) == len(src) == len(xa) + len(xb)
        assert src.sum() == len(xb)
        # rows flagged as B are exactly B's rows (as multisets), likewise for A
        def rows(images, labels):
            return sorted(img.tobytes() + bytes([lab]) for img, lab in zip(images, labels, strict=True))

        assert rows(x[src], y[src]) == rows(xb, yb)
        assert rows(x[~src], y[~src]) == rows(xa, ya)
        assert not np.all(src[:-1] <= src[1:])  # shuffled, not stacked


@pytest.mark.parametrize("same", [False, True])
def test_halves_images_and_labels_by_hand(same):
    """Every halves image is two base images, each with adjacent column pairs averaged by hand
    (rounded half up), left and right; different: label (left + right) mod 10; same: the left
    image is row i, the right one of its class, label y_i."""
    base = synthetic.make_random(seed=3, n_train=200, n_test=50)
    out = synthetic.halves(base, np.random.default_rng(0), same)
    for split in ("train", "test"):
        x, y = getattr(base, f"x_{split}"), getattr(base, f"y_{split}")
        images, labels = getattr(out, f"x_{split}"), getattr(out, f"y_{split}")
        assert images.shape == x.shape and images.dtype == np.uint8 and len(labels) == len(y)
        squeezed = [[[(int(img[r, 2 * c]) + int(img[r, 2 * c + 1]) + 1) // 2 for c in range(14)] for r in range(28)]
                    for img in x]
        halves_of = {np.asarray(s, np.uint8).tobytes(): i for i, s in enumerate(squeezed)}
        for k in range(0, len(labels), 7):
            left, right = (halves_of[np.ascontiguousarray(images[k][:, h]).tobytes()] for h in (slice(0, 14), slice(14, 28)))
            if same:
                assert left == k and y[right] == y[k] and labels[k] == y[k]
            else:
                assert labels[k] == (y[left] + y[right]) % 10


@pytest.mark.parametrize("same", [False, True])
def test_stacked_examples_are_two_whole_images_as_channels(same):
    """Every stacked example is two base images unchanged, one per channel; different: label
    (first + second) mod 10; same: channel 0 is row i, channel 1 an image of its class, label y_i."""
    base = synthetic.make_random(seed=5, n_train=120, n_test=40)
    out = synthetic.stacked(base, np.random.default_rng(1), same)
    for split in ("train", "test"):
        x, y = getattr(base, f"x_{split}"), getattr(base, f"y_{split}")
        images, labels = getattr(out, f"x_{split}"), getattr(out, f"y_{split}")
        assert images.shape == (*x.shape, 2) and images.dtype == np.uint8 and len(labels) == len(y)
        row_of = {img.tobytes(): i for i, img in enumerate(x)}
        for k in range(len(labels)):
            first, second = (row_of[np.ascontiguousarray(images[k][:, :, c]).tobytes()] for c in (0, 1))
            if same:
                assert first == k and y[second] == y[k] and labels[k] == y[k]
            else:
                assert labels[k] == (y[first] + y[second]) % 10


def test_stacked_and_halves_draw_the_same_pairs():
    """One seed, one pairing: the halves image of row k squeezes the two images stacked in row k."""
    base = synthetic.make_random(seed=2, n_train=60, n_test=20)
    halved = synthetic.halves(base, np.random.default_rng(9), same=False)
    stacked = synthetic.stacked(base, np.random.default_rng(9), same=False)
    np.testing.assert_array_equal(halved.y_train, stacked.y_train)
    np.testing.assert_array_equal(halved.x_train[:, :, :14], synthetic.squeeze_width(stacked.x_train[..., 0]))
    np.testing.assert_array_equal(halved.x_train[:, :, 14:], synthetic.squeeze_width(stacked.x_train[..., 1]))


def test_paired_datasets_are_built_by_name(fake_mirror, tmp_path):
    build.build_all(("halves-mnist", "halves-same-mnist", "stacked-same-mnist"), tmp_path, log=lambda _: None)
    data = build.load_dataset("halves-same-mnist", tmp_path)
    assert data.x_train.shape[1:] == (28, 28) and set(np.unique(data.y_test)) <= set(range(10))
    assert build.load_dataset("stacked-same-mnist", tmp_path).x_test.shape[1:] == (28, 28, 2)
    assert build.parse_name("halves-same-mnist") == ("mnist",) == build.parse_name("stacked-mnist")
    assert build.paired_of("stacked-same-fashion") == ("fashion", True, True)
    assert build.paired_of("halves-fashion") == ("fashion", False, False)
    for bad in ("halves-line", "stacked-random"):
        with pytest.raises(DatasetError, match="unknown dataset name"):
            build.parse_name(bad)


def test_every_generator_is_deterministic(fake_mirror, tmp_path):
    """Two builds from scratch (full-size LINE and RANDOM) give an identical MANIFEST."""
    names = ("line", "random", "mnist", "line-mnist", "line-mnist-separated", "cifar10", "mnist-cifar10")
    first, second = tmp_path / "a", tmp_path / "b"
    build.build_all(names, first, log=lambda _: None)
    build.build_all(names, second, log=lambda _: None)
    manifest = (first / "MANIFEST").read_text()
    assert manifest == (second / "MANIFEST").read_text()
    assert len(manifest.splitlines()) == len(names)
    # the seed matters
    seeded = build.build_all(("line",), tmp_path / "c", seed=43, log=lambda _: None)
    assert seeded.built == ["line"]
    assert (tmp_path / "c" / "line.npz").read_bytes() != (first / "line.npz").read_bytes()


def test_loader_scales_to_unit_interval(fake_mirror, tmp_path):
    build.build_all(("mnist-cifar10-separated",), tmp_path, log=lambda _: None)
    data = build.load_dataset("mnist-cifar10-separated", tmp_path)
    assert data.x_train.dtype == np.float32
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    assert data.source_train is not None and data.source_train.dtype == bool
    assert np.all(data.y_train[~data.source_train] < 5) and np.all(data.y_train[data.source_train] >= 5)


# ----------------------------------------------------------------------------- CIFAR-10


def test_cifar_loader_and_grey_conversion(fake_mirror):
    from skimage.color import rgb2gray
    from skimage.transform import resize

    archive = fake_mirror["mirror"] / "cifar-10" / raw_files.CIFAR_ARCHIVE
    data = parsers.load_cifar10_archive(archive)
    batches = fake_mirror["cifar"]
    assert data.x_train.shape == (20, 28, 28) and data.x_test.shape == (4, 28, 28)
    expected_labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    np.testing.assert_array_equal(data.y_train, expected_labels)
    # oracle: the paper's per-image skimage pipeline (resize with anti-aliasing, rgb2gray)
    row = batches["data_batch_2"][b"data"][1]
    rgb = row.reshape(3, 32, 32).transpose(1, 2, 0) / 255.0
    expected = np.rint(rgb2gray(resize(rgb, (28, 28), anti_aliasing=True)) * 255)
    np.testing.assert_array_equal(data.x_train[5], expected.astype(np.uint8))


def test_grey_of_constant_colour_is_the_luma_sum():
    r, g, b = 200, 100, 40
    row = np.concatenate([np.full(1024, r), np.full(1024, g), np.full(1024, b)]).astype(np.uint8)
    grey = parsers.cifar_to_grey28(row[None])
    assert np.all(grey == round(0.2125 * r + 0.7154 * g + 0.0721 * b))


def test_corrupt_cifar_archive(tmp_path):
    bad = tmp_path / raw_files.CIFAR_ARCHIVE
    bad.write_bytes(b"\x1f\x8b\x08\x00 broken")
    with pytest.raises(DatasetError, match="not a readable tar.gz"):
        parsers.load_cifar10_archive(bad)


# ----------------------------------------------------------------------------- real files


@pytest.mark.skipif(
    not os.environ.get(raw_files.MIRROR_ENV)
    or not os.path.isdir(os.path.join(os.environ.get(raw_files.MIRROR_ENV, ""), "mnist")),
    reason="real MNIST mirror not configured",
)
def test_real_mnist_through_the_mirror(tmp_path):
    report = build.build_all(("mnist",), tmp_path, log=lambda _: None)
    assert report.built == ["mnist"]
    data = build.load_dataset("mnist", tmp_path)
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert np.bincount(data.y_train).tolist()[:2] == [5923, 6742]


def test_poly_targets_by_hand():
    """Each of the 512 targets is the polynomial of one 0/1 coefficient vector over the nine
    monomials x1^a x2^b, both in itertools.product order, summed term by term."""
    import itertools

    data = synthetic.make_poly(seed=3, n_train=40, n_test=8)
    assert data.x_train.shape == (40, 2) and data.y_train.shape == (40, 512) and data.y_test.shape == (8, 512)
    assert data.x_train.dtype == data.y_train.dtype == np.float32
    monomials = list(itertools.product((0, 1, 2), repeat=2))
    for row in (0, 17, 39):
        x1, x2 = (float(v) for v in data.x_train[row])
        for k, coefs in enumerate(itertools.product((0, 1), repeat=9)):
            by_hand = sum(c * x1**a * x2**b for c, (a, b) in zip(coefs, monomials, strict=True))
            assert data.y_train[row, k] == pytest.approx(by_hand, rel=1e-5, abs=1e-5)
    again = synthetic.make_poly(seed=3, n_train=40, n_test=8)
    np.testing.assert_array_equal(again.x_test, data.x_test)  # seeded
    big = synthetic.make_poly(seed=3, n_train=20000, n_test=1)
    assert abs(big.x_train.mean()) < 0.03 and abs(big.x_train.std() - 1) < 0.03  # standard normal inputs


def test_a_regression_dataset_keeps_its_floats_through_the_file(tmp_path):
    data = synthetic.make_poly(seed=1, n_train=30, n_test=6)
    build.save_imageset(tmp_path / "poly.npz", data)
    loaded = build.load_dataset("poly", tmp_path)
    for split in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(loaded, split), getattr(data, split))
    assert loaded.y_train.dtype == np.float32 and build.parse_name("poly") == ("poly",)

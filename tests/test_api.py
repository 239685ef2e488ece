"""The public API: the estimators, their one validation path, the one conversion of inputs,
the README's Python example, and a numeric core that runs without Keras."""

from __future__ import annotations

import doctest
import pydoc
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import nn_clustering as nc
from nn_clustering.core.graph import mlp_graph
from nn_clustering.core.shuffle import ShuffleConfig, shuffle_test
from nn_clustering.core.spectral import SpectralConfig
from nn_clustering.errors import ClusteringError, ModelError, NnClusteringError, ParameterError

ROOT = Path(__file__).resolve().parents[1]


def planted_modules(seed=0, sizes=(40, 24, 24, 8), modules=4, leak=0.02):
    """Kernels of a net made of ``modules`` disjoint blocks with weak weights between them, and
    each node's planted module, layer by layer."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n) * modules // n for n in sizes]
    kernels = []
    for a, b in zip(groups[:-1], groups[1:], strict=True):
        w = rng.uniform(0.5, 1.0, (a.size, b.size))
        kernels.append(np.where(a[:, None] == b[None, :], w, leak * w))
    return kernels, np.concatenate(groups)


def test_spectral_ncut_recovers_planted_modules_and_matches_the_core():
    kernels, planted = planted_modules()
    model = nc.SpectralNCut(n_clusters=4, random_state=3).fit(kernels)
    assert adjusted_rand_score(planted, model.labels_) == 1.0
    assert [len(layer) for layer in model.labels_by_layer_] == [40, 24, 24, 8]
    # the n-cut by hand: cut(c) / vol(c) over the planted partition
    adjacency = mlp_graph(kernels).adjacency.toarray()
    by_hand = sum(adjacency[planted == c][:, planted != c].sum() / adjacency[planted == c].sum() for c in range(4))
    assert model.ncut_ == pytest.approx(by_hand, rel=1e-12)


def test_spectral_ncut_is_the_shuffle_tests_observed_clustering():
    """The same root seed gives the same clustering in both estimators and in the core's
    shuffle_test, so the README's two examples agree."""
    rng = np.random.default_rng(4)
    kernels = [rng.normal(size=(30, 20)), rng.normal(size=(20, 20)), rng.normal(size=(20, 6))]
    model = nc.SpectralNCut(n_clusters=3, random_state=11).fit(kernels)
    test = nc.ShuffleTest(n_clusters=3, n_shuffles=8, random_state=11).fit(kernels)
    direct = shuffle_test(kernels, SpectralConfig(3), ShuffleConfig(n_shuffles=8, random_state=11), progress=False)
    np.testing.assert_array_equal(model.labels_, test.labels_)
    np.testing.assert_array_equal(test.labels_, direct.clustering.labels)
    np.testing.assert_array_equal(test.shuffled_ncuts_, direct.shuffled_ncuts)
    assert (test.p_value_, test.z_, test.significant_) == (direct.stats.p_value, direct.stats.z,
                                                            direct.stats.significant)
    # p by hand: (number of shuffles at or below the observed n-cut + 1) / (N + 1)
    assert test.p_value_ == (np.sum(test.shuffled_ncuts_ <= test.ncut_) + 1) / 9


def test_planted_modules_are_significant_and_their_shuffles_are_not():
    kernels, _ = planted_modules(seed=1)
    test = nc.ShuffleTest(n_clusters=4, n_shuffles=20, method="layer_nonzero", random_state=0).fit(kernels)
    assert test.significant_ and test.p_value_ == pytest.approx(1 / 21)
    assert test.ncut_ < test.shuffled_ncuts_.min() and test.z_ < -5


def test_fit_accepts_every_form_of_a_network_through_one_conversion(tmp_path):
    keras = pytest.importorskip("keras")
    kernels, _ = planted_modules(seed=2, sizes=(12, 8, 8, 4), modules=2)
    model = keras.Sequential([keras.Input((12,))] + [keras.layers.Dense(k.shape[1], activation="relu")
                                                     for k in kernels])
    for layer, kernel in zip(model.layers, kernels, strict=True):
        layer.set_weights([kernel.astype(np.float32), np.zeros(kernel.shape[1], np.float32)])
    kernels = [k.astype(np.float32).astype(np.float64) for k in kernels]  # what Keras holds
    np.savez(tmp_path / "net.npz", *kernels)
    model.save(tmp_path / "net.keras")
    forms = [kernels, nc.NetworkWeights.from_arrays(kernels), str(tmp_path / "net.npz"), tmp_path / "net.npz",
             tmp_path / "net.keras", model]
    fits = [nc.SpectralNCut(n_clusters=2).fit(form) for form in forms]
    for fit in fits[1:]:
        np.testing.assert_array_equal(fit.labels_, fits[0].labels_)
        assert fit.ncut_ == fits[0].ncut_
    with pytest.raises(ModelError, match="cannot read a network from a dict"):
        nc.SpectralNCut().fit({"kernel": kernels[0]})
    assert nc.as_weights(fits[1].weights_) is fits[1].weights_


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_clusters": 1}, "n_clusters must be at least 2, not 1"),
        ({"n_clusters": 2.5}, "n_clusters must be an integer, not 2.5"),
        ({"n_shuffles": 0}, "n_shuffles must be at least 1, not 0"),
        ({"method": "rows"}, "unknown shuffle method 'rows' for method; use one of 'layer', 'layer_nonzero'"),
        ({"norm": "l3"}, "unknown slice norm 'l3' for norm; use one of 'l1', 'l2'"),
        ({"n_jobs": 0}, "n_jobs must be a positive number of workers, or -1 for one per core, not 0"),
        ({"random_state": -1}, "random_state must be at least 0, not -1"),
        ({"random_state": None}, "random_state must be an integer, not None"),
        ({"drop_dead_ends": "yes"}, "drop_dead_ends must be True or False, not 'yes'"),
        ({"scheduler": ""}, "scheduler must be a dask scheduler address, not ''"),
        ({"n_init": 0}, "n_init must be at least 1, not 0"),
    ],
)
def test_bad_parameters_raise_one_error_type_before_any_work(params, message):
    kernels, _ = planted_modules()
    with pytest.raises(ParameterError, match=re.escape(message)) as info:
        nc.ShuffleTest(**params).fit(kernels)
    assert isinstance(info.value, ValueError) and isinstance(info.value, NnClusteringError)
    assert "\n" not in str(info.value)


def test_k_too_large_for_the_graph_is_a_clustering_error():
    kernels, _ = planted_modules(sizes=(3, 2, 1), modules=1)
    with pytest.raises(ClusteringError, match="k = 6 is not below the 6 non-isolated nodes"):
        nc.SpectralNCut(n_clusters=6).fit(kernels)


def test_estimator_protocol_params_repr_and_not_fitted():
    test = nc.ShuffleTest(n_clusters=3, n_shuffles=10)
    assert test.get_params()["n_clusters"] == 3 and set(test.get_params()) >= {"method", "n_jobs", "random_state"}
    assert repr(test) == "ShuffleTest(n_clusters=3, n_shuffles=10)"
    assert test.set_params(method="layer_nonzero") is test and test.method == "layer_nonzero"
    with pytest.raises(ParameterError, match="has no parameter 'k'"):
        test.set_params(k=4)
    with pytest.raises(nc.NotFittedError, match="call fit"):
        _ = test.p_value_
    with pytest.raises(TypeError):
        nc.SpectralNCut(4)  # keyword-only parameters


def test_public_api_is_small_and_documented():
    assert set(nc.__all__) == {"CommunityPartition", "NetworkWeights", "NnClusteringError", "NotFittedError",
                               "ParameterError", "ShuffleTest", "SpectralNCut", "__version__", "as_weights",
                               "load_weights"}
    text = pydoc.render_doc(nc.ShuffleTest, renderer=pydoc.plaintext)
    for section in ("Parameters", "Attributes", "Examples", "p_value_", "significant_", "random_state"):
        assert section in text
    from nn_clustering import estimators

    failures, tried = doctest.testmod(estimators, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 8 and failures == 0


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python section, run as written on a small pruned net at the path it names."""
    code = readme_python_example()
    path = re.search(r'"(models/[^"]+\.npz)"', code).group(1)
    kernels, _ = planted_modules(seed=5)
    for k in kernels:
        k[np.random.default_rng(0).random(k.shape) < 0.5] = 0.0  # pruned
    (tmp_path / path).parent.mkdir(parents=True)
    np.savez(tmp_path / path, *kernels)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["test"].significant_
    np.testing.assert_array_equal(namespace["test"].labels_, namespace["model"].labels_)


def test_numeric_core_runs_with_keras_and_tensorflow_blocked():
    """A fresh interpreter in which importing keras, tensorflow or jax fails: the package, its
    numeric core and the estimators import and cluster a net."""
    script = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tensorflow", "jax"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
import numpy as np
import nn_clustering as nc
from nn_clustering.core import graph, kmeans, lesion, ncut, shuffle, spectral, stats
rng = np.random.default_rng(0)
kernels = [rng.normal(size=(20, 12)), rng.normal(size=(12, 4))]
labels = spectral.cluster_graph(graph.mlp_graph(kernels), spectral.SpectralConfig(3)).labels
test = nc.ShuffleTest(n_clusters=3, n_shuffles=4).fit(kernels)
assert len(labels) == 36 and len(test.shuffled_ncuts_) == 4
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow", "jax"))
assert not loaded, loaded
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_core_modules_import_no_framework():
    """The numeric core's source never names Keras, TensorFlow or the project's outer layers."""
    core = ROOT / "src" / "nn_clustering" / "core"
    for path in core.glob("*.py"):
        source = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(keras|tensorflow|jax|torch)\b", source, re.M), path
        assert not re.search(r"^\s*from \.\.(training|registry|experiments|storage|data|formats)\b", source, re.M), path


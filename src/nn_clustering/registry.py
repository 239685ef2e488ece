"""The model tags of method.md §2.4 and the training profiles (``profiles/*.json``).

A tag (``MNIST``, ``MNIST+DROPOUT``, ``CNN-FASHION``, ...) names a dataset, an architecture
and a schedule. A profile scales the schedule: ``paper`` keeps method.md's numbers, ``quick``
caps epochs and trains one instance per tag.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, replace
from importlib import resources

import numpy as np

from .core.enums import Architecture, PairSelection, Task
from .errors import NnClusteringError, printable


@dataclass(frozen=True)
class TagSpec:
    """How one tag is trained."""

    tag: str
    dataset: str
    arch: Architecture
    dropout: float  # MLP dropout rate (0 = none); CNN +DROPOUT uses the fixed 0.25/0.5 scheme
    epochs: int
    prune_epochs: int
    instances: int = 1
    batch_size: int = 128
    shuffle: bool = True
    train_rows: int | None = None
    learning_curve: bool = False
    l1: float = 0.0  # L1 kernel penalty (method.md §2.5)
    l2: float = 0.0  # L2 kernel penalty
    init_modules: int = 0  # clusterable initialisation with this many modules (0 = none)
    hidden: tuple[int, ...] = (256, 256, 256, 256)  # MLP hidden widths
    input_side: int = 28  # images averaged down to input_side x input_side pixels (method.md §2.6)
    cluster_strength: float = 0.0  # the clusterability regulariser's lambda (0 = none)
    cluster_eigs: int = 3  # eigenvalues it penalises
    channels: int = 1  # CNN input channels (2 on the stacked datasets)
    task: Task = Task.CLASSIFY
    n_inputs: int | None = None  # MLP inputs (None: input_side^2 pixels)
    n_outputs: int = 10  # classes, or regression targets

    @property
    def inputs(self) -> int:
        """The MLP's input width."""
        return self.n_inputs or self.input_side**2

    @property
    def has_dropout(self) -> bool:
        """Whether this is a +DROPOUT variant."""
        return self.tag.endswith("+DROPOUT")


@dataclass(frozen=True)
class Profile:
    """Scaling of every tag's schedule (None = keep method.md's number)."""

    name: str
    description: str = ""
    instances: int | None = None
    max_epochs: int | None = None
    max_prune_epochs: int | None = None
    max_cnn_epochs: int | None = None
    max_cnn_prune_epochs: int | None = None
    checkpoints: bool = True
    n_shuffles: int = 320  # shuffles per shuffle test in the analyses
    lesion_random: int = 100  # random lesions per sub-module (single lesion test)
    double_lesion_random: int = 50  # random lesions per pair (double lesion test)
    double_lesion_pairs: PairSelection = PairSelection.ALL  # non-small sub-modules, or important ones

    def __post_init__(self) -> None:
        object.__setattr__(self, "double_lesion_pairs",
                           PairSelection.parse(self.double_lesion_pairs, "double_lesion_pairs"))

    def apply(self, spec: TagSpec) -> TagSpec:
        """The tag's schedule under this profile."""
        cnn = spec.arch == Architecture.CNN
        cap_e = (self.max_cnn_epochs if cnn else None) or self.max_epochs
        cap_p = (self.max_cnn_prune_epochs if cnn else None) or self.max_prune_epochs
        return replace(
            spec,
            epochs=min(spec.epochs, cap_e) if cap_e else spec.epochs,
            prune_epochs=min(spec.prune_epochs, cap_p) if cap_p else spec.prune_epochs,
            instances=self.instances or spec.instances,
            learning_curve=spec.learning_curve and self.checkpoints,
        )


def _with_dropout(spec: TagSpec, rate: float, **changes) -> list[TagSpec]:
    return [spec, replace(spec, tag=spec.tag + "+DROPOUT", dropout=rate, **changes)]


def _build_registry() -> dict[str, TagSpec]:
    specs: list[TagSpec] = []
    for name, dataset in (("MNIST", "mnist"), ("FASHION", "fashion"), ("LINE", "line")):
        specs += _with_dropout(TagSpec(name, dataset, Architecture.MLP, 0.0, 20, 20, 10, learning_curve=True), 0.5)
    specs += _with_dropout(
        TagSpec("CIFAR10", "cifar10", Architecture.MLP, 0.0, 20, 40, 10, learning_curve=True), 0.2, epochs=100
    )
    for mixture in ("LINE-MNIST", "LINE-CIFAR10", "MNIST-CIFAR10"):
        cifar = "CIFAR10" in mixture
        for suffix in ("", "-SEPARATED"):
            tag = mixture + suffix
            base = TagSpec(tag, tag.lower(), Architecture.MLP, 0.0, 30 if cifar else 20, 40 if cifar else 20)
            specs += _with_dropout(base, 0.2 if cifar else 0.5)
    specs += _with_dropout(TagSpec("RANDOM", "random", Architecture.MLP, 0.0, 20, 20, learning_curve=True), 0.5)
    for factor, epochs in (("1.5", 30), ("2", 40), ("10", 200)):
        base = TagSpec(f"MNIST-x{factor}-EPOCHS", "mnist", Architecture.MLP, 0.0, epochs, 20, learning_curve=True)
        specs += _with_dropout(base, 0.5)
    specs += _with_dropout(TagSpec("RANDOM-x50-EPOCHS", "random", Architecture.MLP, 0.0, 1000, 20, learning_curve=True), 0.5)
    specs += _with_dropout(
        TagSpec("RANDOM-OVERFITTING", "random", Architecture.MLP, 0.0, 100, 100, shuffle=False, train_rows=3000,
                learning_curve=True),
        0.5,
    )
    for name, dataset in (("MNIST", "mnist"), ("FASHION", "fashion"), ("CIFAR10", "cifar10"), ("LINE", "line")):
        specs += _with_dropout(TagSpec(f"CNN-{name}", dataset, Architecture.CNN, 0.0, 10, 10, batch_size=64), 0.5)
    specs += _factors()
    return {s.tag: s for s in specs}


#: The successor paper's penalty rate for its L1 and L2 factors, and its module count.
PENALTY = 5e-5
MODULES = 10


def _factors() -> list[TagSpec]:
    """The successor paper's training factors (method.md §2.5-§2.6), five instances each as it
    trained: MLP and CNN on MNIST and Fashion-MNIST with an L1 or L2 penalty or the
    clusterable initialisation, MLPs on the halves datasets and CNNs on their stacked forms, the
    polynomial regression MLP (2-256x4-512) plain and with either penalty; ten each of its small
    MNIST MLP (49-64x3-10 on 7 x 7 images) with and without the
    clusterability regulariser."""
    specs = []
    for name, dataset in (("MNIST", "mnist"), ("FASHION", "fashion")):
        for prefix, arch, epochs, batch in (("", Architecture.MLP, 20, 128), ("CNN-", Architecture.CNN, 10, 64)):
            base = TagSpec(f"{prefix}{name}", dataset, arch, 0.0, epochs, epochs, 5, batch_size=batch)
            specs += [replace(base, tag=base.tag + "+L1REG", l1=PENALTY), replace(base, tag=base.tag + "+L2REG", l2=PENALTY),
                      replace(base, tag=base.tag + "+MOD-INIT", init_modules=MODULES)]
        for kind in ("HALVES", "HALVES-SAME"):
            specs.append(TagSpec(f"{kind}-{name}", f"{kind.lower()}-{dataset}", Architecture.MLP, 0.0, 20, 20, 5))
        for kind in ("STACKED", "STACKED-SAME"):
            specs.append(TagSpec(f"CNN-{kind}-{name}", f"{kind.lower()}-{dataset}", Architecture.CNN, 0.0, 10, 10, 5,
                                 batch_size=64, channels=2))
    poly = TagSpec("POLY", "poly", Architecture.MLP, 0.0, 20, 20, 5, task=Task.REGRESS, n_inputs=2, n_outputs=512)
    specs += [poly, replace(poly, tag="POLY+L1REG", l1=PENALTY), replace(poly, tag="POLY+L2REG", l2=PENALTY)]
    small = TagSpec("SMALL-MNIST", "mnist", Architecture.MLP, 0.0, 10, 10, 10, hidden=(64, 64, 64), input_side=7)
    return [*specs, small, replace(small, tag="SMALL-MNIST+CLUSTERABILITY", cluster_strength=0.1)]


REGISTRY: dict[str, TagSpec] = _build_registry()
PRIMARY_TAGS = ("MNIST", "MNIST+DROPOUT", "FASHION", "FASHION+DROPOUT", "CIFAR10", "CIFAR10+DROPOUT",
                "LINE", "LINE+DROPOUT")


def get_spec(tag: str) -> TagSpec:
    """The spec of a tag, with a clear error naming the known tags."""
    try:
        return REGISTRY[tag]
    except KeyError:
        raise NnClusteringError(f"unknown model tag {tag!r}; known tags: {', '.join(REGISTRY)}") from None


def known_profiles() -> list[str]:
    """The names of the profiles shipped with the package (``profiles/*.json``)."""
    folder = resources.files(__package__).joinpath("profiles")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_profile(name: str) -> Profile:
    """Read ``profiles/<name>.json`` shipped with the package."""
    if name not in known_profiles():  # also keeps the name from naming any other file
        raise NnClusteringError(f"unknown profile {printable(name)!r}; use one of {', '.join(known_profiles())}")
    text = resources.files(__package__).joinpath("profiles", f"{name}.json").read_text()
    return Profile(**json.loads(text))


def instance_seed(tag: str, instance: int, root: int = 42) -> int:
    """The recorded training seed of one instance of a tag (independent per tag and instance)."""
    state = np.random.SeedSequence([root, zlib.crc32(tag.encode()), instance]).generate_state(1)
    return int(state[0] % (2**31 - 1))


def default_shuffles(profile: str, n_shuffles: int | None) -> int:
    """``n_shuffles`` if given, else the profile's number."""
    return int(n_shuffles) if n_shuffles else load_profile(profile).n_shuffles

"""Every parameter of the project, its one name and its constraint, checked in one place.

:data:`PARAMETERS` is the declarative table (as scikit-learn's ``_parameter_constraints``): the
estimators, the configs (:class:`~nn_clustering.core.shuffle.ShuffleConfig`,
:class:`~nn_clustering.core.spectral.SpectralConfig`, the lesion and experiment configs), the
command line and the result rows all use these names (``n_clusters``, ``n_shuffles``,
``random_state``, ``n_jobs``, ...). :func:`validate` checks a mapping of them and raises one
:class:`~nn_clustering.errors.ParameterError` (both the project's error and a ``ValueError``);
a caller that spells a parameter otherwise (the command line's ``--k`` for ``n_clusters``)
passes its spelling, and the message uses it: ``--k must be at least 2, not 1``.

Whether a valid k fits a graph (below its number of nodes) is a property of the data, checked
where the graph is clustered (:func:`nn_clustering.core.spectral.cluster_graph`).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ParameterError
from .enums import (
    ActivationNull,
    Architecture,
    Choice,
    GraphKind,
    Measure,
    PairSelection,
    Partitioner,
    ShuffleMethod,
    SliceNorm,
    Stage,
)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Integer:
    """An integer in ``[low, high]`` (either end open when None)."""

    low: int | None = None
    high: int | None = None

    def check(self, value: Any, said: str) -> int:
        if not _is_integer(value):
            raise ParameterError(f"{said} must be an integer, not {value!r}")
        value = int(value)
        if self.low is not None and value < self.low:
            raise ParameterError(f"{said} must be at least {self.low}, not {value}")
        if self.high is not None and value > self.high:
            raise ParameterError(f"{said} must be at most {self.high}, not {value}")
        return value


@dataclass(frozen=True)
class Real:
    """A finite number of at least ``low``."""

    low: float

    def check(self, value: Any, said: str) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
            raise ParameterError(f"{said} must be a number, not {value!r}")
        if value < self.low:
            raise ParameterError(f"{said} must be at least {self.low}, not {value}")
        return float(value)


@dataclass(frozen=True)
class Positive:
    """A finite number above 0."""

    def check(self, value: Any, said: str) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < float("inf"):
            raise ParameterError(f"{said} must be a number above 0, not {value!r}")
        return float(value)


@dataclass(frozen=True)
class Probability:
    """A number strictly between 0 and 1 (a significance level)."""

    def check(self, value: Any, said: str) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
            raise ParameterError(f"{said} must be a number strictly between 0 and 1 (e.g. 0.05), not {value!r}")
        return float(value)


@dataclass(frozen=True)
class Flag:
    """True or False."""

    def check(self, value: Any, said: str) -> bool:
        if not isinstance(value, bool):
            raise ParameterError(f"{said} must be True or False, not {value!r}")
        return value


@dataclass(frozen=True)
class OneOf:
    """A member of the enum ``choices`` (given as the member or its string); ``many``: a
    sequence of them, returned as a tuple."""

    choices: type[Choice]
    many: bool = False

    def _one(self, value: Any, said: str) -> Choice:
        if isinstance(value, self.choices):
            return value
        if not isinstance(value, str):
            raise ParameterError(f"{said} must be one of {', '.join(map(repr, self.choices.values()))}, not {value!r}")
        return self.choices.parse(value, said)

    def check(self, value: Any, said: str) -> Choice | tuple[Choice, ...]:
        if not self.many:
            return self._one(value, said)
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            raise ParameterError(f"{said} must be a sequence of {self.choices.label()} values, not {value!r}")
        return tuple(self._one(v, said) for v in value)


def available_cores() -> int:
    """The cores this process may use (cgroup quotas and CPU affinity respected)."""
    import joblib

    return max(1, int(joblib.cpu_count()))


@dataclass(frozen=True)
class Workers:
    """Worker processes: a positive integer, or -1 for one per core (joblib's convention).

    Without a dask scheduler the workers are local processes, so at most one per available core:
    more only slow every shuffle down and can exhaust the machine's memory."""

    def check(self, value: Any, said: str, scheduler: str | None = None) -> int:
        value = Integer(-1).check(value, said)
        if value == 0:
            raise ParameterError(f"{said} must be a positive number of workers, or -1 for one per core, not 0")
        cores = available_cores()
        if scheduler is None and value > cores:
            raise ParameterError(
                f"{said} must be at most the {cores} cores of this machine (or -1 for one per core), not "
                f"{value}; give a dask scheduler to run on more"
            )
        return value


_SCHEDULER_ADDRESS = re.compile(r"^(?:(tcp|tls|ws|wss|ucx)://)?(\[[0-9a-fA-F:]+\]|[\w.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class SchedulerAddress:
    """Where shuffles run: None (local processes), ``"local"`` (a dask LocalCluster) or a dask
    scheduler address ``[protocol://]host:port``."""

    def check(self, value: Any, said: str) -> str | None:
        if value is None or value == "local":
            return value
        match = _SCHEDULER_ADDRESS.match(value) if isinstance(value, str) else None
        if match is None or not 0 < int(match.group(3)) < 65536:
            raise ParameterError(
                f"{said} must be a dask scheduler address, not {value!r}: use 'local' for a cluster on this "
                "machine or tcp://host:port for a running scheduler (e.g. tcp://10.0.0.5:8786)"
            )
        return value


#: The largest root seed (what ``numpy.random.SeedSequence`` and Keras take).
MAX_SEED = 2**63 - 1

#: Every parameter by its one name, with its constraint.
PARAMETERS: dict[str, Integer | Real | Positive | Probability | Flag | OneOf | Workers | SchedulerAddress] = {
    "n_clusters": Integer(2),
    "n_init": Integer(1),
    "max_iter": Integer(1),
    "tol": Real(0.0),
    "n_shuffles": Integer(1),
    "method": OneOf(ShuffleMethod),
    "methods": OneOf(ShuffleMethod, many=True),
    "norm": OneOf(SliceNorm),
    "drop_dead_ends": Flag(),
    "n_jobs": Workers(),
    "scheduler": SchedulerAddress(),
    "random_state": Integer(0, MAX_SEED),
    "level": Probability(),
    "progress": Flag(),
    "n_random": Integer(1),
    "max_instances": Integer(1),
    "stage": OneOf(Stage),
    "stages": OneOf(Stage, many=True),
    "arch": OneOf(Architecture),
    "pairs": OneOf(PairSelection),
    "graph": OneOf(GraphKind),
    "measure": OneOf(Measure),
    "null": OneOf(ActivationNull),
    "partitioner": OneOf(Partitioner),
    "resolution": Positive(),
    "layerwise": Flag(),
    "batch_size": Integer(1),
}


def validate(values: Mapping[str, Any], spelling: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``values`` (parameter name -> value) checked against :data:`PARAMETERS` and normalised
    (enums parsed, integers as ``int``); names not in the table pass unchanged.

    ``spelling`` names the parameters as the caller's user wrote them (``{"n_clusters": "--k"}``);
    the first bad value raises a :class:`ParameterError` in those words. ``n_jobs`` is checked
    with the ``scheduler`` beside it (more workers than cores only with a scheduler)."""
    spelling = spelling or {}
    out: dict[str, Any] = {}
    for name, value in values.items():
        constraint, said = PARAMETERS.get(name), spelling.get(name, name)
        if isinstance(constraint, Workers):
            scheduler = PARAMETERS["scheduler"].check(values.get("scheduler"), spelling.get("scheduler", "scheduler"))
            out[name] = constraint.check(value, said, scheduler)
        else:
            out[name] = value if constraint is None else constraint.check(value, said)
    return out


def validate_fields(config: Any) -> None:
    """A frozen dataclass ``config``'s fields checked by :func:`validate` and set to their
    normalised values (its ``__post_init__``)."""
    for name, value in validate(asdict(config)).items():
        object.__setattr__(config, name, value)


def checked(name: str, value: Any) -> Any:
    """One parameter checked against :data:`PARAMETERS` (:func:`validate` of one value)."""
    return validate({name: value})[name]

"""Parameter checks in one place: every public entry point (estimators, configs, command line)
validates through these and raises :class:`~nn_clustering.errors.ParameterError`, which is both
the project's error and a ``ValueError``."""

from __future__ import annotations

import numbers
import re

from ..errors import ClusteringError, ParameterError
from .enums import Choice


def _said(name: str, value) -> str:
    """``n_jobs = 3`` for a parameter, ``--jobs 3`` for a command-line option."""
    return f"{name} {value}" if name.startswith("--") else f"{name} = {value}"


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int within [minimum, maximum]; a :class:`ParameterError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{_said(name, repr(value))} must be an integer")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ParameterError(f"{_said(name, value)} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ParameterError(f"{_said(name, value)} must be at most {maximum}")
    return value


def check_float(value, name: str, minimum: float | None = None, exclusive_minimum: bool = False) -> float:
    """``value`` as a finite float above ``minimum``; a :class:`ParameterError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ParameterError(f"{name} = {value!r} must be a number")
    value = float(value)
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        raise ParameterError(f"{name} = {value} must be {'above' if exclusive_minimum else 'at least'} {minimum}")
    return value


def check_level(value, name: str = "level") -> float:
    """A significance level: a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ParameterError(f"{_said(name, repr(value))} must be a number strictly between 0 and 1, e.g. 0.05")
    return float(value)


def check_bool(value, name: str) -> bool:
    """``value`` if it is a bool; a :class:`ParameterError` otherwise."""
    if not isinstance(value, bool):
        raise ParameterError(f"{name} = {value!r} must be True or False")
    return value


def check_choice(value, choices: type[Choice], name: str) -> Choice:
    """``value`` as a member of the enum ``choices`` (see :meth:`Choice.parse`)."""
    if isinstance(value, choices):
        return value
    if not isinstance(value, str):
        raise ParameterError(f"{name} = {value!r} must be one of {', '.join(map(repr, choices.values()))}")
    return choices.parse(value, name)


def available_cores() -> int:
    """The cores this process may use (cgroup quotas and CPU affinity respected)."""
    import joblib

    return max(1, int(joblib.cpu_count()))


def check_n_jobs(value, name: str = "n_jobs", scheduler: str | None = None) -> int:
    """Worker processes: a positive integer, or -1 for one per core (joblib's convention).

    Without a dask ``scheduler`` the workers are local processes, so at most one per available
    core: more only slow every shuffle down and can exhaust the machine's memory."""
    value = check_int(value, name, -1)
    if value == 0:
        raise ParameterError(f"{name} = 0: use a positive number of workers, or -1 for one per core")
    cores = available_cores()
    if scheduler is None and value > cores:
        raise ParameterError(
            f"{name} = {value} is more than the {cores} cores of this machine; use at most {cores} "
            "(or -1 for one per core), or give a dask scheduler to run on more"
        )
    return value


def check_seed(value, name: str = "random_state") -> int:
    """A root seed: an integer from 0 to 2**63 - 1 (what ``numpy.random.SeedSequence`` takes)."""
    return check_int(value, name, 0, 2**63 - 1)


def check_n_clusters(value, n_nodes: int | None = None) -> int:
    """k: an integer of at least 2 and, given the graph's ``n_nodes`` non-isolated nodes, below
    that; a :class:`~nn_clustering.errors.ClusteringError` otherwise."""
    k = check_int(value, "n_clusters")
    if k < 2:
        raise ClusteringError(f"k = {k}: need at least 2 clusters")
    if n_nodes is not None and k >= n_nodes:
        raise ClusteringError(
            f"k = {k} is not below the {n_nodes} non-isolated nodes of the graph; choose a smaller k"
        )
    return k


_SCHEDULER_ADDRESS = re.compile(r"^(?:(tcp|tls|ws|wss|ucx)://)?(\[[0-9a-fA-F:]+\]|[\w.-]+):(\d{1,5})$")


def check_scheduler(value, name: str = "scheduler") -> str | None:
    """Where shuffles run: None (local processes), ``"local"`` (a dask LocalCluster) or a dask
    scheduler address ``[protocol://]host:port``."""
    if value is None or value == "local":
        return value
    match = _SCHEDULER_ADDRESS.match(value) if isinstance(value, str) else None
    if match is None or not 0 < int(match.group(3)) < 65536:
        raise ParameterError(
            f"{name} = {value!r} is not a dask scheduler address; use 'local' for a cluster on this "
            "machine or tcp://host:port for a running scheduler (e.g. tcp://10.0.0.5:8786)"
        )
    return value

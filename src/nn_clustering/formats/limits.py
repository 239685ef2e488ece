"""What reading one model file may take: a memory bound.

Rule: every reader checks what a file *declares* (zip members' uncompressed sizes, ``.npy``,
safetensors and HDF5 headers, ONNX dims, a pickle's tensor views) against the memory limit
before it allocates or decompresses anything. Each tensor is counted by the bytes it takes as
float64 (what the readers convert weights to) and the counts add up per file
(:class:`ModelBudget`); a file over the limit is one :class:`~nn_clustering.errors.ModelError`
line naming the tensor, its shape, its size and how to raise the limit.

The limit (:func:`memory_limit`) is, in order of precedence: the value set by
:func:`memory_limit_set` (the command line's ``--max-model-memory``), the environment variable
``NN_CLUSTERING_MODEL_MEMORY`` (``123``, ``512M``, ``16G``, ``1.5GiB``: powers of 1024), else
half of the memory available to this process: ``MemAvailable`` of ``/proc/meminfo`` (the
physical memory where that is unknown), or less where a cgroup memory limit or an
address-space limit (``ulimit -v``) leaves less.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import resource
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path

from ..errors import ModelError, ParameterError, quoted

ENV = "NN_CLUSTERING_MODEL_MEMORY"
#: The share of the available memory that one model file may take by default.
DEFAULT_SHARE = 0.5
DEFAULT_REASON = "half of the available memory"
RAISE_HINT = f"raise it with --max-model-memory or {ENV} if the machine has the memory"
#: Values of cgroup or rlimit settings at or above this mean "no limit".
_UNLIMITED = 1 << 60
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_OVERRIDE: ContextVar[tuple[int, str] | None] = ContextVar("nn_clustering_model_memory", default=None)


def parse_size(text: str, name: str = "--max-model-memory") -> int:
    """Bytes from ``text``: a number, optionally followed by K, M, G, T or P (powers of 1024,
    with or without ``iB``/``B``): ``123``, ``512M``, ``16G``, ``1.5GiB``. A value that is not a
    positive size is a one-line :class:`ParameterError` naming ``name``."""
    match = _SIZE.match(str(text))
    value = math.floor(float(match.group(1)) * _UNITS[match.group(2).lower()]) if match else 0
    if value < 1:
        raise ParameterError(f"{name} {text!r} is not a memory size: give a positive number of bytes, "
                             "optionally with K, M, G or T (powers of 1024), e.g. 512M, 16G or 1.5GiB")
    return value


def format_size(nbytes: int | float) -> str:
    """``nbytes`` for a message: three significant digits of the largest fitting binary unit
    (``745 GiB``, ``11.6 GiB``, ``512 bytes``)."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    value, unit = float(nbytes), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    text = f"{value:.0f}" if value >= 100 or unit == 0 else f"{value:.3g}"
    return f"{text} {units[unit]}"


def _read_int(path: str) -> int | None:
    """The integer in a one-value kernel file, None where it is absent or says ``max``."""
    try:
        text = Path(path).read_text().split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int:
    """``MemAvailable`` of ``/proc/meminfo``, else the machine's physical memory."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _cgroup_room() -> int | None:
    """What this process's cgroup memory limit leaves (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), None without a limit."""
    group = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                group = line[3:].strip().lstrip("/")
    for limit_file, usage_file in ((f"/sys/fs/cgroup/{group}/memory.max", f"/sys/fs/cgroup/{group}/memory.current"),
                                   ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit = _read_int(limit_file)
        if limit is not None and limit < _UNLIMITED:
            return max(0, limit - (_read_int(usage_file) or 0))
    return None


def _address_space_room() -> int | None:
    """What the address-space limit (``ulimit -v``) leaves this process, None without one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft >= _UNLIMITED:
        return None
    used = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                used = int(line.split()[1]) * 1024
    return max(0, soft - used)


def available_memory() -> int:
    """Bytes this process can still take: ``MemAvailable`` (the physical memory where that is
    unknown), or less where a cgroup or address-space limit leaves less."""
    return min(r for r in (_meminfo_available(), _cgroup_room(), _address_space_room()) if r is not None)


def limit_and_reason() -> tuple[int, str]:
    """The memory limit for reading one model file and where it comes from (see the module
    docstring for the order of precedence)."""
    override = _OVERRIDE.get()
    if override is not None:
        return override
    text = os.environ.get(ENV, "").strip()
    if text:
        return parse_size(text, ENV), f"set by {ENV}"
    return int(available_memory() * DEFAULT_SHARE), DEFAULT_REASON


def memory_limit() -> int:
    """Bytes that reading one model file may take (:func:`limit_and_reason`)."""
    return limit_and_reason()[0]


@contextlib.contextmanager
def memory_limit_set(nbytes: int | str, origin: str = "--max-model-memory") -> Iterator[int]:
    """Within the block, model files are read under a limit of ``nbytes`` (an int or a size
    text for :func:`parse_size`), reported in messages as set by ``origin``."""
    value = parse_size(nbytes, origin) if isinstance(nbytes, str) else int(nbytes)
    if value < 1:
        raise ParameterError(f"{origin} {nbytes!r} is not a memory size: give a positive number of bytes")
    token = _OVERRIDE.set((value, f"set by {origin}"))
    try:
        yield value
    finally:
        _OVERRIDE.reset(token)


def one_line(exc: BaseException, limit: int = 120) -> str:
    """An exception's text for a message: whitespace collapsed to single spaces, cut to ``limit``."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def element_count(shape: Sequence[int]) -> int:
    """The number of elements of ``shape`` (exact, as a Python int)."""
    return math.prod(int(d) for d in shape)


def shape_text(shape: Sequence[int]) -> str:
    """A shape as a message writes it: ``(1000, 10)``, ``(5,)``, ``()`` (cut to 120 characters)."""
    text = repr(tuple(int(d) for d in shape))
    return text if len(text) <= 120 else text[:117] + "..."


class ModelBudget:
    """The running total of memory that reading one model file takes; raises a one-line
    :class:`ModelError` before the total would pass the limit."""

    def __init__(self, source: str | os.PathLike, limit: tuple[int, str] | None = None) -> None:
        self.source = str(source)
        self.limit, self.reason = limit or limit_and_reason()
        self.total = 0

    def _over(self, what: str, nbytes: int, unit: str = "") -> ModelError:
        alone = nbytes <= self.limit  # then it is the running total that passes the limit
        before = f" on top of the {format_size(self.total)} read before it" if alone else ""
        return ModelError(f"{self.source}: {what} would take {format_size(nbytes)}{unit}{before}, over the "
                          f"{format_size(self.limit)} limit for reading a model ({self.reason}); {RAISE_HINT}")

    def tensor(self, name: str, shape: Sequence[int], nbytes: int | None = None, what: str = "tensor") -> int:
        """Count a tensor of ``shape`` (``nbytes``: its bytes in memory, by default its size as
        float64); returns its element count."""
        count = element_count(shape)
        nbytes = 8 * count if nbytes is None else int(nbytes)
        if self.total + nbytes > self.limit:
            raise self._over(f"{what} {quoted(name)} of shape {shape_text(shape)}", nbytes, " as float64")
        self.total += nbytes
        return count

    def bytes(self, what: str, nbytes: int) -> None:
        """Count ``nbytes`` that reading ``what`` (a file, an archive member) holds in memory."""
        if self.total + int(nbytes) > self.limit:
            raise self._over(what, int(nbytes))
        self.total += int(nbytes)

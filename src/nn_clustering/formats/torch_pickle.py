"""PyTorch's zip files (``torch.save`` since PyTorch 1.6) read without PyTorch.

Such a file is a zip archive ``<name>/data.pkl`` (a pickle of the saved object),
``<name>/data/<key>`` (the raw bytes of each storage) and ``<name>/byteorder``. The pickle is
read by a restricted unpickler: it may name only what a ``state_dict`` of tensors needs
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
``_rebuild_parameter``, the ``torch.<Type>Storage`` types); anything else is refused with one
line, and nothing the pickle names is ever called. Tensors come out of the pickle as
descriptions (storage, offset, shape, strides). Before any storage is read, each description is
checked: its storage member's declared size matches the storage's element count, the view lies
inside its storage, and the view's elements as float64 fit the memory limit (a view can be
larger than its storage: an expanded tensor has stride 0). Then each view is rebuilt with
``numpy.lib.stride_tricks.as_strided`` and copied. bfloat16 is upcast exactly to float32;
complex storages are refused naming the tensor.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError, quoted
from .dtypes import EXPORT_HINT, bfloat16_to_float32, complex_refusal
from .limits import ModelBudget, element_count, format_size, one_line, shape_text
from .npz import READ_ERRORS

#: numpy types of ``torch.<Type>Storage``; ``BFloat16`` is read as raw 16 bits and upcast.
STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?", "UInt16Storage": "u2", "UInt32Storage": "u4", "UInt64Storage": "u8",
    "UntypedStorage": "u1", "ComplexFloatStorage": "c8", "ComplexDoubleStorage": "c16",
}
#: The longest ``data.pkl`` read: a state_dict's pickle holds only names and tensor descriptions.
MAX_PICKLE = 64 << 20
SAVE_HINT = "save model.state_dict() with torch.save, or " + EXPORT_HINT


class _Refused(Exception):
    """Raised inside the unpickler; turned into one :class:`ModelError` line by the reader."""


@dataclass(frozen=True)
class StorageType:
    """What the pickle's ``torch.<Type>Storage`` stands for."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass
class StorageRef:
    """A storage named by the pickle's persistent id: its archive member, type and size."""

    key: str
    kind: StorageType
    numel: int
    member: zipfile.ZipInfo


class TensorRef:
    """A tensor as the pickle describes it; nothing is read until it has been checked."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state) -> None:
        raise _Refused("the pickle sets the state of a tensor")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None) -> TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records the description only."""
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """Stand-in for ``torch._utils._rebuild_parameter`` (a parameter is its tensor)."""
    return data


ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class StateDictUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED` names and ``torch.<Type>Storage``
    types, and maps persistent ids ``('storage', type, key, location, numel)`` to
    :class:`StorageRef` over the archive's members."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, StorageRef] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return StorageType(name)
        raise _Refused(f"the pickle asks for {module}.{name}, which a state_dict of tensors does not need; "
                       "it is not run")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and not isinstance(pid[4], bool) and pid[4] >= 0):
            raise _Refused(f"the pickle refers to {quoted(pid)}, not to a storage")
        key, kind, numel = pid[2], pid[1], pid[4]
        if key not in self.storages:
            try:
                member = self.archive.getinfo(f"{self.prefix}data/{key}")
            except KeyError:
                raise _Refused(f"the pickle refers to storage {quoted(key)}, which the archive does not hold") from None
            self.storages[key] = StorageRef(key, kind, numel, member)
        return self.storages[key]


def _archive_prefix(archive: zipfile.ZipFile, source: str) -> str:
    """The folder of the archive's ``data.pkl`` (``archive/``, or the saved file's name)."""
    found = [n[: -len("data.pkl")] for n in archive.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
    if len(found) != 1:
        raise ModelError(f"{source}: not a PyTorch zip file ({len(found)} <name>/data.pkl members); {SAVE_HINT}")
    return found[0]


def _byteorder(archive: zipfile.ZipFile, prefix: str, source: str) -> str:
    """``<`` or ``>`` from the archive's ``byteorder`` member (little-endian where it is absent)."""
    try:
        info = archive.getinfo(f"{prefix}byteorder")
    except KeyError:
        return "<"
    text = archive.read(info).strip() if info.file_size <= 16 else b""
    if text not in (b"little", b"big"):
        raise ModelError(f"{source}: the byteorder member says {text[:16]!r}, not little or big; {SAVE_HINT}")
    return "<" if text == b"little" else ">"


def _unpickle(archive: zipfile.ZipFile, prefix: str, source: str, budget: ModelBudget):
    """The object pickled in ``data.pkl``, through :class:`StateDictUnpickler`; the pickle's
    opcodes are walked first (:func:`pickletools.genops`), so that a length it declares can
    never make the unpickler allocate more than the pickle holds."""
    info = archive.getinfo(f"{prefix}data.pkl")
    if info.file_size > MAX_PICKLE:
        raise ModelError(f"{source}: its pickle data.pkl declares {format_size(info.file_size)}, more than the "
                         f"{format_size(MAX_PICKLE)} a state_dict's pickle needs; {SAVE_HINT}")
    budget.bytes("its pickle data.pkl", 16 * info.file_size)
    data = archive.read(info)
    try:
        for _ in pickletools.genops(data):
            pass
        unpickler = StateDictUnpickler(data, archive, prefix)
        return unpickler.load()
    except _Refused as exc:
        raise ModelError(f"{source}: {exc}; {SAVE_HINT}") from None
    except Exception as exc:  # a damaged pickle raises many types
        raise ModelError(f"{source}: its pickle data.pkl is not readable ({type(exc).__name__}: "
                         f"{one_line(exc)}); {SAVE_HINT}") from None


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_tensor(name: str, ref: TensorRef, source: str, budget: ModelBudget, counted: set[str]) -> None:
    """Check one tensor before anything of it is read: its storage is real and numeric and its
    member holds exactly ``numel`` elements, its view (offset, shape, strides) lies inside the
    storage, and the storage's bytes (once per storage: ``counted``) and the view's elements as
    float64 fit ``budget``."""
    storage = ref.storage
    if not isinstance(storage, StorageRef):
        raise ModelError(f"{source}: tensor {quoted(name)} has no storage in the archive; {SAVE_HINT}")
    dtype = storage.kind.dtype
    if dtype.kind == "c":
        raise complex_refusal(source, name, storage.kind.name)
    if storage.member.file_size != storage.numel * dtype.itemsize:
        raise ModelError(f"{source}: tensor {quoted(name)} has a storage of {storage.numel} {storage.kind.name} elements "
                         f"({storage.numel * dtype.itemsize} bytes) but its member data/{storage.key} holds "
                         f"{storage.member.file_size} bytes; the file is damaged; {SAVE_HINT}")
    size, stride = ref.size, ref.stride
    if not (isinstance(size, tuple | list) and isinstance(stride, tuple | list) and len(size) == len(stride)
            and all(_whole(v) for v in (*size, *stride)) and _whole(ref.offset)):
        raise ModelError(f"{source}: tensor {quoted(name)} has a malformed view (offset {quoted(ref.offset)}, size {quoted(size)}, "
                         f"stride {quoted(stride)}); {SAVE_HINT}")
    count = element_count(size)
    last = ref.offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if count else ref.offset - 1
    if last >= storage.numel:
        raise ModelError(f"{source}: tensor {quoted(name)} of shape {shape_text(size)} (offset {ref.offset}, strides "
                         f"{tuple(stride)}) reaches element {last} of a storage of {storage.numel}; the file is "
                         f"damaged; {SAVE_HINT}")
    if storage.key not in counted:
        budget.bytes(f"the storage data/{storage.key} of tensor {quoted(name)}", storage.member.file_size)
        counted.add(storage.key)
    budget.tensor(name, size)


def _materialise(ref: TensorRef, order: str, storages: dict[str, np.ndarray], archive: zipfile.ZipFile) -> np.ndarray:
    """The tensor's values as a new array (bfloat16 upcast to float32), its storage read once."""
    storage = ref.storage
    dtype = storage.kind.dtype.newbyteorder(order)
    if storage.key not in storages:
        with archive.open(storage.member) as f:
            storages[storage.key] = np.frombuffer(f.read(storage.member.file_size), dtype)
    flat = storages[storage.key]
    view = np.lib.stride_tricks.as_strided(flat[ref.offset:] if flat.size else flat, shape=tuple(ref.size),
                                           strides=tuple(s * dtype.itemsize for s in ref.stride), writeable=False)
    values = np.array(view)
    return bfloat16_to_float32(values) if storage.kind.name == "BFloat16Storage" else values


def read_torch_zip(path: str | Path, budget: ModelBudget | None = None) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save(model.state_dict(), path)`` zip file by name, read without
    PyTorch (see the module docstring for what is checked before anything is read)."""
    source = str(path)
    budget = budget or ModelBudget(source)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive, source)
            order = _byteorder(archive, prefix, source)
            state = _unpickle(archive, prefix, source, budget)
            if not isinstance(state, dict) or not all(isinstance(v, TensorRef) for v in state.values()):
                raise ModelError(f"{source}: holds a {type(state).__name__}, not a state_dict of tensors; save "
                                 "model.state_dict(), or " + EXPORT_HINT)
            if not all(isinstance(k, str) for k in state):
                raise ModelError(f"{source}: a state_dict's keys are module paths, but this one holds "
                                 f"{type(next(k for k in state if not isinstance(k, str))).__name__} keys; {SAVE_HINT}")
            counted: set[str] = set()
            for name, ref in state.items():
                check_tensor(name, ref, source, budget, counted)
            storages: dict[str, np.ndarray] = {}
            return {name: _materialise(ref, order, storages, archive) for name, ref in state.items()}
    except READ_ERRORS as exc:
        raise ModelError(f"{source}: not a readable PyTorch zip file ({one_line(exc)}); {SAVE_HINT}") from None


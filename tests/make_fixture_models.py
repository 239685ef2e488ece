"""Model files encoded by hand, independently of the readers under test: PyTorch zip files
(the pickle written opcode by opcode, no PyTorch needed), safetensors files (length, JSON
header, bytes), and small bombs (files that declare far more than they hold).

Imported by the tests; run as a script (``python tests/make_fixture_models.py FOLDER``) it
writes one small example of each hand-built kind into FOLDER for inspection.
"""

from __future__ import annotations

import json
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------- pickle opcodes


class PickleWriter:
    """A protocol-2 pickle built opcode by opcode (see :mod:`pickletools` for their meaning)."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2

    def global_(self, module: str, name: str) -> PickleWriter:
        self.out += b"c" + f"{module}\n{name}\n".encode()  # GLOBAL
        return self

    def text(self, s: str) -> PickleWriter:
        data = s.encode()
        self.out += b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE
        return self

    def int_(self, v: int) -> PickleWriter:
        data = v.to_bytes((v.bit_length() + 8) // 8 or 1, "little", signed=True)
        self.out += b"\x8a" + bytes([len(data)]) + data  # LONG1
        return self

    def bool_(self, v: bool) -> PickleWriter:
        self.out += b"\x88" if v else b"\x89"  # NEWTRUE / NEWFALSE
        return self

    def op(self, code: bytes) -> PickleWriter:
        self.out += code
        return self

    def tuple_of_ints(self, values) -> PickleWriter:
        self.op(b"(")  # MARK
        for v in values:
            self.int_(int(v))
        return self.op(b"t")  # TUPLE

    def empty_ordered_dict(self) -> PickleWriter:
        return self.global_("collections", "OrderedDict").op(b")R")  # EMPTY_TUPLE, REDUCE

    def getvalue(self) -> bytes:
        return bytes(self.out) + b"."  # STOP


def torch_zip(path: Path, tensors: dict, storages: dict[str, tuple[str, bytes]], *, byteorder: str = "little",
              prefix: str = "archive", extra_globals: tuple[str, str] | None = None) -> Path:
    """A ``torch.save(state_dict)`` zip file written by hand.

    ``storages``: key -> (storage type such as ``FloatStorage``, raw bytes); ``tensors``: name
    -> (storage key, offset, size, stride), pickled as ``torch._utils._rebuild_tensor_v2``
    calls in an ``OrderedDict``, as PyTorch writes them. ``extra_globals`` adds a call of
    ``module.name()`` as one more value (a pickle that asks for something else)."""
    itemsizes = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                 "IntStorage": 4, "ByteStorage": 1, "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16}
    p = PickleWriter().empty_ordered_dict().op(b"(")  # MARK for SETITEMS
    for name, (key, offset, size, stride) in tensors.items():
        kind, data = storages[key]
        p.text(name).global_("torch._utils", "_rebuild_tensor_v2").op(b"(")
        p.op(b"(").text("storage").global_("torch", kind).text(key).text("cpu").int_(len(data) // itemsizes[kind])
        p.op(b"tQ")  # TUPLE, BINPERSID
        p.int_(offset).tuple_of_ints(size).tuple_of_ints(stride).bool_(False).empty_ordered_dict()
        p.op(b"tR")  # TUPLE, REDUCE
    if extra_globals:
        p.text("evil").global_(*extra_globals).op(b")R")
    p.op(b"u")  # SETITEMS
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", p.getvalue())
        z.writestr(f"{prefix}/byteorder", byteorder)
        for key, (_, data) in storages.items():
            z.writestr(f"{prefix}/data/{key}", data)
        z.writestr(f"{prefix}/version", "3\n")
    return Path(path)


def torch_state_dict_zip(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A hand-written PyTorch zip of contiguous float32/float64 arrays, one storage each."""
    kinds = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage"}
    storages, tensors = {}, {}
    for i, (name, a) in enumerate(arrays.items()):
        a = np.ascontiguousarray(a)
        storages[str(i)] = (kinds[a.dtype], a.astype(a.dtype.newbyteorder("<")).tobytes())
        strides = [s // a.itemsize for s in a.strides]
        tensors[name] = (str(i), 0, a.shape, strides)
    return torch_zip(path, tensors, storages)


# --------------------------------------------------------------------------- safetensors


def safetensors_bytes(entries: dict[str, tuple[str, list[int], bytes]], *, pad_to: int | None = None) -> bytes:
    """A safetensors file: little-endian u64 header length, the JSON header, the data.
    ``entries``: name -> (dtype such as ``F32``, shape, raw bytes)."""
    header, offset = {}, 0
    for name, (dtype, shape, data) in entries.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(d for _, _, d in entries.values())


def bf16_exact(rng: np.random.Generator, *shape: int) -> tuple[np.ndarray, bytes]:
    """Float32 values with their low 16 bits zero (so bfloat16 holds them exactly) and their
    bfloat16 encoding: the top 16 bits of each, little-endian."""
    bits = rng.normal(size=shape).astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
    return bits.view(np.float32), (bits >> 16).astype("<u2").tobytes()


# --------------------------------------------------------------------------- bombs


def npz_deflate_bomb(path: Path, shape=(30000, 10000), dtype="<f2") -> Path:
    """An ``.npz`` whose ``arr_0`` is ``shape`` zeros, deflated (600 MB of zeros in about 600 kB),
    and a small ``arr_1``."""
    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("arr_0.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
            chunk = bytes(16 << 20)
            while count:
                f.write(chunk[: min(count, len(chunk))])
                count -= min(count, len(chunk))
        with z.open("arr_1.npy", "w") as f:
            np.lib.format.write_array(f, np.ones((shape[-1], 4), np.float32))
    return Path(path)


def npz_header_bomb(path: Path, shape=(10**6, 10**6)) -> Path:
    """An ``.npz`` whose ``arr_0`` header claims ``shape`` float64 but holds 64 bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z, z.open("arr_0.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": shape})
        f.write(bytes(64))
    return Path(path)


def sparse_safetensors(path: Path, shape=(30000, 10000)) -> Path:
    """A safetensors file whose one F32 tensor ``w`` is ``shape`` zeros, held as a sparse file
    (its data are a hole: the file takes a few kB on disk)."""
    nbytes = int(np.prod(shape)) * 4
    head = safetensors_bytes({"w": ("F32", list(shape), b"")})
    length = struct.unpack("<Q", head[:8])[0]
    header = json.loads(head[8:8 + length])
    header["w"]["data_offsets"] = [0, nbytes]
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + nbytes)
    return Path(path)


def main(folder: str) -> None:
    """Write one example of each hand-built kind into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    torch_state_dict_zip(out / "mlp.pt", {"0.weight": rng.normal(size=(4, 6)).astype(np.float32),
                                          "0.bias": np.zeros(4, np.float32)})
    values, data = bf16_exact(rng, 4, 6)
    (out / "bf16.safetensors").write_bytes(safetensors_bytes({"0.weight": ("BF16", [4, 6], data)}))
    npz_header_bomb(out / "header-bomb.npz")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fixture-models")

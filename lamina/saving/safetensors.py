"""A hand-written safetensors codec: tensors ↔ bytes, byte-compatible with the safetensors library.

Owns the byte format (header, dtypes, alignment, validation) and ``FormatError``; files and
zips live in ``lamina.saving.archive``. Decoding never unpickles or evaluates anything and
checks the whole header before allocating any tensor.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import torch

__all__ = ["FormatError", "encode_safetensors", "decode_safetensors", "MAX_HEADER_BYTES"]

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit on the JSON header
_MAX_RANK = 64

# safetensors name -> (torch dtype, bytes per element, order of the library's dtype enum).
# The library writes tensors sorted by that rank, descending, then by name; copying the
# order makes our bytes identical to its bytes.
_DTYPES = {
    "BOOL": (torch.bool, 1, 0),
    "U8": (torch.uint8, 1, 1),
    "I8": (torch.int8, 1, 2),
    "I16": (torch.int16, 2, 5),
    "F16": (torch.float16, 2, 7),
    "BF16": (torch.bfloat16, 2, 8),
    "I32": (torch.int32, 4, 9),
    "F32": (torch.float32, 4, 11),
    "F64": (torch.float64, 8, 12),
    "I64": (torch.int64, 8, 13),
}
_NAME_OF_DTYPE = {torch_dtype: name for name, (torch_dtype, _, _) in _DTYPES.items()}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


class FormatError(ValueError):
    """Raised for any malformed, truncated or hostile lamina or safetensors file.

    The message says what is wrong with the file. Catch this one class to handle every
    unreadable file.

    Example:
    >>> try:
    ...     decode_safetensors(b"short")
    ... except FormatError as error:
    ...     print(error)
    safetensors: the data holds 5 bytes, fewer than the 8-byte header length.
    """


def encode_safetensors(tensors, metadata=None) -> bytes:
    """Serialize named tensors to safetensors bytes.

    The output is byte-identical to ``safetensors.torch.save`` (same tensor order, compact
    JSON header padded with spaces to 8 bytes) when ``metadata`` has at most one entry; the
    library writes several entries in hash order, lamina in the given order.

    Args:
        tensors: dict mapping names to ``torch.Tensor`` or ``np.ndarray`` of dtype
            float64/32/16, bfloat16, int64/32/16/8, uint8 or bool, on any device.
        metadata: optional dict of str to str, stored under ``"__metadata__"``. Default None.

    Returns:
        The file's bytes.

    Example:
    >>> data = encode_safetensors({"w": torch.ones(2)})
    >>> data[8:]
    b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  \\x00\\x00\\x80?\\x00\\x00\\x80?'
    """
    if not isinstance(tensors, dict):
        raise TypeError(
            f"encode_safetensors expects a dict of name -> tensor; received {type(tensors).__name__}."
        )
    entries = []
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise TypeError(
                f"safetensors tensor names must be str other than '__metadata__'; received {name!r}."
            )
        tensor = _as_cpu_tensor(name, value)
        dtype_name = _NAME_OF_DTYPE[tensor.dtype]
        entries.append((-_DTYPES[dtype_name][2], name.encode("utf-8", "strict"), name, dtype_name, tensor))
    entries.sort(key=lambda entry: entry[:2])  # rank descending, then name as UTF-8 bytes

    header: dict = {}
    if metadata is not None:
        if not (isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in metadata.items())):
            raise TypeError(
                f"safetensors metadata must be a dict of str -> str or None; received {metadata!r:.200}."
            )
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for _, _, name, dtype_name, tensor in entries:
        data = _tensor_bytes(tensor, _DTYPES[dtype_name][1])
        span = [offset, offset + len(data)]
        header[name] = {"dtype": dtype_name, "shape": list(tensor.shape), "data_offsets": span}
        chunks.append(data)
        offset += len(data)
    # ensure_ascii=False and compact separators reproduce serde_json's output byte for byte.
    header_bytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    return b"".join([len(header_bytes).to_bytes(8, "little"), header_bytes, *chunks])


def decode_safetensors(data) -> dict[str, torch.Tensor]:
    """Parse safetensors bytes into CPU tensors, validating the whole file first.

    Checked before anything is allocated: the header length fits the data, the header is a
    UTF-8 JSON object without duplicate keys, every entry has a known dtype, a shape of
    non-negative ints and in-range offsets, the entries tile the data section exactly (no
    gap, overlap or trailing bytes) and each covers ``prod(shape) * itemsize`` bytes. So the
    declared elements can never exceed what the file holds.

    Args:
        data: the file's bytes (``bytes``, ``bytearray`` or ``memoryview``).

    Returns:
        dict of name -> ``torch.Tensor`` (fresh memory, in file order).

    Raises:
        FormatError: for anything malformed; the message says what.

    Example:
    >>> decode_safetensors(encode_safetensors({"b": torch.tensor([1, 2])}))
    {'b': tensor([1, 2])}
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_safetensors expects bytes; received {type(data).__name__}.")
    view = memoryview(data).cast("B")
    if len(view) < 8:
        raise FormatError(
            f"safetensors: the data holds {len(view)} bytes, fewer than the 8-byte header length."
        )
    header_length = int.from_bytes(view[:8], "little")
    if header_length > len(view) - 8:
        raise FormatError(
            f"safetensors: the header declares {header_length} bytes but the data holds only {len(view) - 8} "
            "after the 8-byte length; the file is truncated or not safetensors."
        )
    if header_length > MAX_HEADER_BYTES:
        raise FormatError(
            f"safetensors: header of {header_length} bytes exceeds the {MAX_HEADER_BYTES}-byte limit."
        )
    entries = _parse_header(bytes(view[8 : 8 + header_length]))
    body = view[8 + header_length :]
    _check_layout(entries, len(body))

    tensors = {}
    for name, (dtype_name, shape, begin, end) in entries:
        torch_dtype, itemsize, _ = _DTYPES[dtype_name]
        if begin == end:
            tensors[name] = torch.empty(shape, dtype=torch_dtype)
            continue
        raw = _swap_to_native(torch.frombuffer(bytearray(body[begin:end]), dtype=torch.uint8), itemsize)
        if torch_dtype is torch.bool and bool((raw > 1).any()):
            raise FormatError(f"safetensors: BOOL tensor {name!r} holds bytes other than 0 and 1.")
        tensors[name] = raw.view(torch_dtype).reshape(shape)
    return tensors


def _as_cpu_tensor(name: str, value) -> torch.Tensor:
    """A contiguous CPU tensor of a supported dtype, or TypeError naming the tensor."""
    if isinstance(value, np.ndarray):
        try:
            native = value.astype(value.dtype.newbyteorder("="), copy=False)
            value = torch.from_numpy(np.ascontiguousarray(native))
        except TypeError:
            raise TypeError(
                f"Tensor {name!r} has numpy dtype {value.dtype}, which safetensors cannot store; "
                f"cast it to one of {sorted(str(d).replace('torch.', '') for d in _NAME_OF_DTYPE)}."
            ) from None
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"Tensor {name!r} must be a torch.Tensor or np.ndarray; received {type(value).__name__}."
        )
    if value.layout != torch.strided:
        raise TypeError(f"Tensor {name!r} has layout {value.layout}; convert it with .to_dense() first.")
    if value.dtype not in _NAME_OF_DTYPE:
        raise TypeError(
            f"Tensor {name!r} has dtype {value.dtype}, which lamina's safetensors codec does not store; "
            f"cast it to one of {sorted(str(d).replace('torch.', '') for d in _NAME_OF_DTYPE)}."
        )
    return value.detach().to("cpu").contiguous()


def _tensor_bytes(tensor: torch.Tensor, itemsize: int) -> bytes:
    raw = tensor.reshape(-1).view(torch.uint8)
    return _swap_to_native(raw, itemsize).numpy().tobytes()


def _swap_to_native(raw: torch.Tensor, itemsize: int) -> torch.Tensor:
    """Reverse each element's bytes on big-endian hosts; safetensors is always little-endian."""
    if sys.byteorder == "little" or itemsize == 1:
        return raw
    return raw.view(-1, itemsize).flip(1).reshape(-1)


def _reject_duplicates(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        raise FormatError(f"safetensors: the header repeats the key(s) {duplicates}.")
    return dict(pairs)


def _parse_header(raw: bytes) -> list[tuple[str, tuple[str, list[int], int, int]]]:
    """Header JSON -> [(name, (dtype, shape, begin, end))], every field type-checked."""
    if not raw.startswith(b"{"):
        raise FormatError("safetensors: the header does not start with '{'; the file is not safetensors.")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except FormatError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise FormatError(f"safetensors: the header is not valid UTF-8 JSON ({error}).") from None
    if not isinstance(header, dict):
        raise FormatError(f"safetensors: the header must be a JSON object; received {type(header).__name__}.")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise FormatError("safetensors: '__metadata__' must be an object mapping strings to strings.")
    entries = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
            raise FormatError(
                f"safetensors: entry {name!r} must be an object with exactly the keys {sorted(_ENTRY_KEYS)}; "
                f"received {entry!r:.200}."
            )
        dtype_name, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype_name, str) or dtype_name not in _DTYPES:
            raise FormatError(
                f"safetensors: entry {name!r} has dtype {dtype_name!r:.50}; expected one of {list(_DTYPES)}."
            )
        if not (isinstance(shape, list) and len(shape) <= _MAX_RANK and all(_is_count(d) for d in shape)):
            raise FormatError(
                f"safetensors: entry {name!r} has shape {shape!r:.200}; expected a list of at most "
                f"{_MAX_RANK} non-negative ints."
            )
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            raise FormatError(
                f"safetensors: entry {name!r} has data_offsets {offsets!r:.200}; "
                "expected [begin, end] non-negative ints."
            )
        entries.append((name, (dtype_name, shape, offsets[0], offsets[1])))
    return entries


def _is_count(value) -> bool:
    return type(value) is int and value >= 0  # bool is an int subclass; reject it


def _check_layout(entries, body_length: int) -> None:
    """Offsets must tile [0, body_length) exactly, each span matching its shape and dtype."""
    for name, (dtype_name, shape, begin, end) in entries:
        if begin > end or end > body_length:
            raise FormatError(
                f"safetensors: entry {name!r} has data_offsets [{begin}, {end}] outside the "
                f"{body_length}-byte data section."
            )
        if math.prod(max(dim, 1) for dim in shape) >= 2**63:  # zero-size tensors too: torch indexes in int64
            raise FormatError(
                f"safetensors: entry {name!r} has shape {shape!r:.200}, too large for any tensor."
            )
        expected = math.prod(shape) * _DTYPES[dtype_name][1]
        if expected != end - begin:
            raise FormatError(
                f"safetensors: entry {name!r} declares shape {shape} of {dtype_name} ({expected} bytes) "
                f"but its offsets span {end - begin} bytes."
            )
    position = 0
    for name, (_, _, begin, end) in sorted(entries, key=lambda entry: entry[1][2:]):
        if begin < position:
            raise FormatError(
                f"safetensors: entry {name!r} at bytes [{begin}, {end}] overlaps the previous tensor."
            )
        if begin > position:
            raise FormatError(f"safetensors: {begin - position} unused bytes before entry {name!r}.")
        position = end
    if position != body_length:
        raise FormatError(
            f"safetensors: {body_length - position} bytes after the last tensor are not described by the header."
        )

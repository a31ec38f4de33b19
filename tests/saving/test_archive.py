"""Tests for lamina.saving.archive and lamina.saving.safetensors: round trips, safetensors
compatibility, hostile files, fuzzing and crash-safe writes."""

import datetime
import io
import json
import os
import pickle
import random
import signal
import stat
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import lamina
from lamina.saving import archive
from lamina.saving.archive import (
    FormatError, atomic_write, atomic_writer, decode_safetensors, encode_safetensors, read_archive,
    read_weights_file, write_archive, write_weights_file,
)

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.int16, torch.int8, torch.uint8, torch.bool]
SHAPES = [(), (0,), (3,), (2, 0, 3), (2, 3, 4)]


def _sample(dtype, shape):
    if dtype is torch.bool:
        return torch.rand(shape) > 0.5
    if dtype.is_floating_point:
        return torch.randn(shape).to(dtype)
    low = 0 if dtype is torch.uint8 else -100
    return torch.randint(low, 100, shape).to(dtype)


def _all_dtypes():
    return {f"{str(dtype)[6:]}/{len(shape)}d_{i}": _sample(dtype, shape)
            for dtype in DTYPES for i, shape in enumerate(SHAPES)}


def _assert_same_tensors(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, name
        assert actual[name].shape == tensor.shape, name
        bits = actual[name].reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8)
        assert torch.equal(*bits), name  # bitwise, so NaN payloads count as equal


def _blob(header, body=b""):
    """A safetensors file from a header (dict, or raw bytes) and a data section."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


def _zip(members):
    """Zip bytes from (name or ZipInfo, data) pairs, written exactly as given."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names one attack needs
        with zipfile.ZipFile(buffer, "w") as output:
            for name, data in members:
                output.writestr(name, data)
    return buffer.getvalue()


def _valid_members(tmp_path):
    path = tmp_path / "valid.lamina"
    write_archive(path, {"name": "valid"}, {"w": torch.ones(2)}, {})
    with zipfile.ZipFile(path) as source:
        return [(info.filename, source.read(info)) for info in source.infolist()]


def _write(tmp_path, data, name="attack.lamina"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- safetensors codec ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_safetensors_round_trips_every_dtype_and_shape(dtype, shape):
    tensors = {"x": _sample(dtype, shape)}
    decoded = decode_safetensors(encode_safetensors(tensors))
    _assert_same_tensors(decoded, tensors)


def test_safetensors_round_trips_numpy_and_noncontiguous_inputs():
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    transposed = torch.arange(6.0).reshape(2, 3).t()
    parameter = torch.nn.Parameter(torch.ones(2))
    decoded = decode_safetensors(encode_safetensors(
        {"be": big_endian, "t": transposed, "p": parameter, "np_bool": np.array([True, False])}
    ))
    assert decoded["be"].dtype == torch.int32 and decoded["be"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert torch.equal(decoded["t"], transposed)
    assert not decoded["p"].requires_grad and decoded["p"].tolist() == [1.0, 1.0]
    assert decoded["np_bool"].tolist() == [True, False]


def test_safetensors_layout_follows_the_format():
    tensors = {"b": torch.tensor([1.0], dtype=torch.float64), "a": torch.tensor([2], dtype=torch.int8),
               "c": torch.tensor([3.0])}
    data = encode_safetensors(tensors, {"format": "pt"})
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    assert length % 8 == 0  # so the data section starts 8-byte aligned
    assert data[8 : 8 + length].rstrip(b" ") == json.dumps(header, separators=(",", ":")).encode()
    assert list(header) == ["__metadata__", "b", "c", "a"]  # 8-byte dtypes first, then 4, then 1
    assert header["b"] == {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}
    assert header["c"]["data_offsets"] == [8, 12] and header["a"]["data_offsets"] == [12, 13]
    assert data[8 + length :] == struct.pack("<df", 1.0, 3.0) + b"\x02"


def test_safetensors_matches_the_safetensors_library_byte_for_byte():
    library = pytest.importorskip("safetensors.torch")
    tensors = _all_dtypes()
    assert encode_safetensors(tensors) == library.save(tensors)
    assert encode_safetensors(tensors, {"format": "pt"}) == library.save(tensors, metadata={"format": "pt"})
    names = {"ünïcode \"quoted\"\n": torch.ones(1), "a.b": torch.zeros(2, dtype=torch.int16)}
    assert encode_safetensors(names) == library.save(names)


def test_safetensors_interoperates_with_the_library_both_ways():
    library = pytest.importorskip("safetensors.torch")
    tensors = _all_dtypes()
    _assert_same_tensors(library.load(encode_safetensors(tensors, {"a": "1", "b": "2"})), tensors)
    _assert_same_tensors(decode_safetensors(library.save(tensors, metadata={"a": "1", "b": "2"})), tensors)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"c": torch.ones(2, dtype=torch.complex64)}, "complex64"),
        ({"o": np.array([object()])}, "numpy dtype object"),
        ({"l": [1.0, 2.0]}, "must be a torch.Tensor or np.ndarray"),
        ({1: torch.ones(1)}, "names must be str"),
        ({"__metadata__": torch.ones(1)}, "names must be str"),
        ({"s": torch.ones(2).to_sparse()}, "to_dense"),
    ],
)
def test_safetensors_encode_rejects_unsupported_values(tensors, message):
    with pytest.raises(TypeError, match=message):
        encode_safetensors(tensors)


def test_safetensors_encode_rejects_non_string_metadata():
    with pytest.raises(TypeError, match="metadata must be a dict of str -> str"):
        encode_safetensors({}, {"epoch": 3})


F32_ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00", "fewer than the 8-byte"),
        ((10**6).to_bytes(8, "little") + b"{}", "truncated"),
        ((2**64 - 1).to_bytes(8, "little") + b"{}", "truncated"),
        (_blob(b"[1, 2]"), "does not start with"),
        (_blob(b"{\xff}"), "not valid UTF-8 JSON"),
        (_blob(b"{'a': 1}"), "not valid UTF-8 JSON"),
        (_blob(b'{"w": 1, "w": 2}'), "repeats the key"),
        (_blob(b"{" * 100_000), "not valid UTF-8 JSON"),
        (_blob(b'{"w": {"dtype": "F32", "shape": [' + b"1" * 5000 + b"]}}"), "not valid"),
        (_blob({"w": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}}, b"\0"), "has dtype 'F8'"),
        (_blob({"w": {"dtype": 3, "shape": [1], "data_offsets": [0, 1]}}, b"\0"), "has dtype 3"),
        (_blob({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), "exactly the keys"),
        (_blob({"w": dict(F32_ENTRY, extra=1)}, b"\0" * 8), "exactly the keys"),
        (_blob({"w": [1, 2]}), "exactly the keys"),
        (_blob({"w": dict(F32_ENTRY, shape=[-2])}, b"\0" * 8), "non-negative ints"),
        (_blob({"w": dict(F32_ENTRY, shape=[2.0])}, b"\0" * 8), "non-negative ints"),
        (_blob({"w": dict(F32_ENTRY, shape=[True, 2])}, b"\0" * 8), "non-negative ints"),
        (_blob({"w": dict(F32_ENTRY, shape="2")}, b"\0" * 8), "non-negative ints"),
        (_blob({"w": dict(F32_ENTRY, shape=[1] * 65)}, b"\0" * 4), "at most 64"),
        (_blob({"w": dict(F32_ENTRY, data_offsets=[0])}, b"\0" * 8), r"\[begin, end\]"),
        (_blob({"w": dict(F32_ENTRY, data_offsets=[0, -8])}, b"\0" * 8), r"\[begin, end\]"),
        (_blob({"w": dict(F32_ENTRY, data_offsets=["0", "8"])}, b"\0" * 8), r"\[begin, end\]"),
        (_blob({"w": dict(F32_ENTRY, data_offsets=[8, 0])}, b"\0" * 8), "outside"),
        (_blob({"w": dict(F32_ENTRY, data_offsets=[0, 10**6])}, b"\0" * 8), "outside"),
        (_blob({"w": dict(F32_ENTRY, data_offsets=[2**64, 2**64 + 8])}, b"\0" * 8), "outside"),
        (_blob({"w": dict(F32_ENTRY, shape=[3])}, b"\0" * 8), "span 8 bytes"),
        (_blob({"w": dict(F32_ENTRY, shape=[2**20, 2**20])}, b"\0" * 8), "declares shape"),
        (_blob({"w": dict(F32_ENTRY, shape=[0, 2**62, 4], data_offsets=[0, 0])}), "too large"),
        (_blob({"a": F32_ENTRY, "b": dict(F32_ENTRY, data_offsets=[4, 12])}, b"\0" * 12), "overlaps"),
        (_blob({"a": F32_ENTRY, "b": dict(F32_ENTRY, data_offsets=[0, 8])}, b"\0" * 8), "overlaps"),
        (_blob({"w": dict(F32_ENTRY, data_offsets=[4, 12])}, b"\0" * 12), "unused bytes"),
        (_blob({"w": F32_ENTRY}, b"\0" * 12), "not described by the header"),
        (_blob({"b": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\1\2"), "other than 0 and 1"),
        (_blob({"__metadata__": {"epoch": 3}}), "__metadata__"),
        (_blob({"__metadata__": "x"}), "__metadata__"),
    ],
    ids=lambda value: value if isinstance(value, str) else "data",
)
def test_safetensors_decode_rejects_malformed_data(data, message):
    with pytest.raises(FormatError, match=message):
        decode_safetensors(data)


def test_safetensors_decode_validates_before_allocating(monkeypatch):
    # A shape of 2**80 float32 elements backed by 8 bytes: refused without touching the allocator.
    def forbidden(*args, **kwargs):
        raise AssertionError("decode_safetensors allocated a tensor before validating the header")

    monkeypatch.setattr(torch, "frombuffer", forbidden)
    monkeypatch.setattr(torch, "empty", forbidden)
    data = _blob({"ok": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                  "huge": dict(F32_ENTRY, shape=[2**40, 2**40])}, b"\0" * 8)
    with pytest.raises(FormatError, match="huge"):
        decode_safetensors(data)


def test_safetensors_decode_rejects_non_bytes():
    with pytest.raises(TypeError, match="expects bytes"):
        decode_safetensors("{}")


# --- archive ---------------------------------------------------------------------------------

def test_archive_round_trips_config_weights_metadata_and_extras(tmp_path):
    path = tmp_path / "model.lamina"
    config = {"class_name": "Sequential", "config": {"layers": [{"units": 3, "use_bias": True, "rate": 0.5}]}}
    tensors = _all_dtypes()
    optimizer = {"iterations": torch.tensor(7), "dense/kernel/m": torch.randn(2, 3)}
    write_archive(path, config, tensors, {"note": "ünïcode"}, extra_tensors={"optimizer": optimizer})
    read_config, read_tensors, metadata, extra = read_archive(path)
    assert read_config == config
    _assert_same_tensors(read_tensors, tensors)
    assert list(extra) == ["optimizer"]
    _assert_same_tensors(extra["optimizer"], optimizer)
    assert metadata["note"] == "ünïcode"


def test_archive_metadata_records_versions_and_utc_date(tmp_path):
    path = tmp_path / "model.lamina"
    write_archive(path, {}, {}, {"format_version": "99"})
    metadata = read_archive(path)[2]
    assert metadata["lamina_version"] == lamina.__version__
    assert metadata["torch_version"] == torch.__version__
    assert metadata["format_version"] == archive.FORMAT_VERSION
    utc = datetime.timezone.utc
    saved = datetime.datetime.strptime(metadata["date_saved"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=utc)
    assert abs(datetime.datetime.now(utc) - saved) < datetime.timedelta(minutes=5)


def test_archive_members_are_plain_json_and_safetensors(tmp_path):
    path = tmp_path / "model.lamina"
    weights = {"w": torch.arange(4.0)}
    write_archive(path, {"a": 1}, weights, {}, {"optimizer": {"step": torch.tensor(1)}})
    with zipfile.ZipFile(path) as source:
        assert source.namelist() == [
            "config.json", "model.weights.safetensors", "optimizer.safetensors", "metadata.json"]
        assert source.getinfo("model.weights.safetensors").compress_type == zipfile.ZIP_STORED
        assert json.loads(source.read("config.json")) == {"a": 1}
        weights_bytes = source.read("model.weights.safetensors")
    assert weights_bytes == encode_safetensors(weights)


def test_archive_write_rejects_bad_arguments_and_leaves_no_file(tmp_path):
    path = tmp_path / "model.lamina"
    with pytest.raises(TypeError, match="only JSON types"):
        write_archive(path, {"kernel": torch.ones(1)}, {}, {})
    with pytest.raises(ValueError, match="letters, digits or '_'"):
        write_archive(path, {}, {}, {}, {"../optimizer": {}})
    with pytest.raises(TypeError, match="metadata must be a dict"):
        write_archive(path, {}, {}, ["not", "a", "dict"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../config.json", "climbs out"),
        ("layers/../../etc/passwd", "climbs out"),
        ("/etc/passwd", "absolute path"),
        ("C:/Windows/evil.safetensors", "absolute path"),
        ("..\\evil.safetensors", "backslash"),
        ("weights/", "not a regular file"),
        ("data.pkl", "not a lamina member"),
        ("model.weights.h5", "not a lamina member"),
        ("my optimizer.safetensors", "not a lamina member"),
    ],
)
def test_archive_refuses_unsafe_or_unknown_member_names(tmp_path, name, message):
    data = _zip(_valid_members(tmp_path) + [(name, b"{}")])
    with pytest.raises(FormatError, match=message):
        read_archive(_write(tmp_path, data))


def test_archive_refuses_symlink_members(tmp_path):
    link = zipfile.ZipInfo("optimizer.safetensors")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = _zip(_valid_members(tmp_path) + [(link, b"/etc/passwd")])
    with pytest.raises(FormatError, match="symbolic link"):
        read_archive(_write(tmp_path, data))


def test_archive_refuses_duplicate_members(tmp_path):
    members = _valid_members(tmp_path)
    data = _zip(members + [("config.json", b'{"name": "shadow"}')])
    with pytest.raises(FormatError, match="appears 2 times"):
        read_archive(_write(tmp_path, data))


class _CreatesFile:
    """Unpickling this runs ``open(path, "w")``: proof that a loader executed pickle opcodes."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("member", ["config.json", "model.weights.safetensors", "metadata.json",
                                    "optimizer.safetensors", "data.pkl"])
def test_archive_never_unpickles_a_member(tmp_path, member):
    proof = tmp_path / "payload_ran"
    with pickle.loads(pickle.dumps(_CreatesFile(proof))):  # the payload is live...
        pass
    assert proof.exists()
    proof.unlink()
    payload = pickle.dumps(_CreatesFile(proof))
    members = [(name, payload if name == member else data) for name, data in _valid_members(tmp_path)]
    if member not in dict(members):
        members.append((member, payload))
    with pytest.raises(FormatError):
        read_archive(_write(tmp_path, _zip(members)))
    assert not proof.exists()  # ...but reading the archive never ran it


def test_archive_refuses_a_torch_save_file(tmp_path):
    path = tmp_path / "model.lamina"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(FormatError, match="not a lamina member"):
        read_archive(path)


def test_archive_refuses_oversized_declared_shape_without_allocating(tmp_path):
    huge = _blob({"w": dict(F32_ENTRY, shape=[2**20, 2**20, 2**10])}, b"\0" * 8)
    members = [(name, huge if name == "model.weights.safetensors" else data)
               for name, data in _valid_members(tmp_path)]
    with pytest.raises(FormatError, match="model.weights.safetensors.*declares shape"):
        read_archive(_write(tmp_path, _zip(members)))


def test_archive_refuses_bad_tensor_offsets(tmp_path):
    overlapping = _blob({"a": F32_ENTRY, "b": dict(F32_ENTRY, data_offsets=[4, 12])}, b"\0" * 12)
    members = [(name, overlapping if name.endswith(".safetensors") else data)
               for name, data in _valid_members(tmp_path)]
    with pytest.raises(FormatError, match="overlaps"):
        read_archive(_write(tmp_path, _zip(members)))


def _bomb(tmp_path, size):
    """An archive whose weights member is ``size`` zero bytes, deflated to about size/1000."""
    members = _valid_members(tmp_path)
    bomb = zipfile.ZipInfo("model.weights.safetensors")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    return _zip([(bomb, bytes(size)) if name == "model.weights.safetensors" else (name, data)
                 for name, data in members])


def test_archive_refuses_a_zip_bomb_before_decompressing(tmp_path, monkeypatch):
    path = _write(tmp_path, _bomb(tmp_path, 64 * 2**20))
    assert path.stat().st_size < 2**20

    def forbidden(*args):
        raise AssertionError("read_archive started decompressing a member over the limit")

    monkeypatch.setattr(zipfile, "_get_decompressor", forbidden)
    with pytest.raises(FormatError, match="over the 8388608-byte limit"):
        read_archive(path, max_bytes=8 * 2**20)


def test_archive_refuses_high_expansion_members_by_default():
    info = zipfile.ZipInfo("model.weights.safetensors")
    info.file_size, info.compress_size = 2**30, 2**20
    assert "zip bomb" in archive._member_problem(info, archive.DEFAULT_MAX_BYTES)


def _patch_declared_size(data, name, size):
    """Make both zip headers of ``name`` claim ``size`` uncompressed bytes."""
    patched = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        struct.pack_into("<I", patched, source.getinfo(name).header_offset + 22, size)
    position = patched.find(b"PK\x01\x02")
    while position >= 0:
        length = struct.unpack_from("<H", patched, position + 28)[0]
        if patched[position + 46 : position + 46 + length] == name.encode():
            struct.pack_into("<I", patched, position + 24, size)
        position = patched.find(b"PK\x01\x02", position + 4)
    return bytes(patched)


def test_archive_enforces_sizes_while_decompressing_when_headers_lie(tmp_path, monkeypatch):
    data = _patch_declared_size(_bomb(tmp_path, 32 * 2**20), "model.weights.safetensors", 1000)
    produced = [0]
    real = zipfile._get_decompressor

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def decompress(self, chunk, max_length=0):
            out = self.inner.decompress(chunk, max_length)
            produced[0] += len(out)
            return out

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(zipfile, "_get_decompressor", lambda method: Counting(real(method)))
    with pytest.raises(FormatError):
        read_archive(_write(tmp_path, data), max_bytes=2**20)
    assert produced[0] < 2**20  # stopped near the declared 1000 bytes, far from the real 32 MiB


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (b"\x80\x04\x95not json", "not valid UTF-8 JSON"),
        (b"{'single': 'quotes'}", "not valid UTF-8 JSON"),
        (b"[1, 2, 3]", "JSON object; it holds a list"),
        (b'"a string"', "JSON object; it holds a str"),
        (b"[" * 100_000, "not valid UTF-8 JSON"),
    ],
)
def test_archive_refuses_non_json_config(tmp_path, config, message):
    members = [(name, config if name == "config.json" else data) for name, data in _valid_members(tmp_path)]
    with pytest.raises(FormatError, match=f"config.json .*{message}"):
        read_archive(_write(tmp_path, _zip(members)))


def test_archive_refuses_missing_members_and_other_versions(tmp_path):
    members = _valid_members(tmp_path)
    with pytest.raises(FormatError, match="lacks.*model.weights.safetensors"):
        read_archive(_write(tmp_path, _zip([m for m in members if m[0] != "model.weights.safetensors"])))
    newer = [(name, b'{"format_version": "2"}' if name == "metadata.json" else data)
             for name, data in members]
    with pytest.raises(FormatError, match="format_version '2'"):
        read_archive(_write(tmp_path, _zip(newer)))


def test_archive_refuses_encrypted_and_unusual_compression(tmp_path):
    members = _valid_members(tmp_path)
    bzip = zipfile.ZipInfo("optimizer.safetensors")
    bzip.compress_type = zipfile.ZIP_BZIP2
    with pytest.raises(FormatError, match="compression method 12"):
        read_archive(_write(tmp_path, _zip(members + [(bzip, encode_safetensors({}))])))
    data = bytearray(_zip(members))
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 0x1  # the "encrypted" flag bit of the first member
    with pytest.raises(FormatError, match="encrypted"):
        read_archive(_write(tmp_path, bytes(data)))


def test_archive_refuses_too_many_members(tmp_path):
    extras = [(f"x{i}.safetensors", encode_safetensors({})) for i in range(300)]
    with pytest.raises(FormatError, match="303 members"):
        read_archive(_write(tmp_path, _zip(_valid_members(tmp_path) + extras)))


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04 truncated", random.Random(0).randbytes(4096)],
                         ids=["empty", "truncated", "random"])
def test_archive_refuses_files_that_are_not_zips(tmp_path, data):
    with pytest.raises(FormatError, match="not a readable zip archive"):
        read_archive(_write(tmp_path, data))


def test_archive_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_archive(tmp_path / "absent.lamina")


# --- fuzzing ---------------------------------------------------------------------------------

def _mutate(data, rng, header_end=None):
    data = bytearray(data)
    kind = rng.randrange(4 if header_end else 3)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:
        del data[rng.randrange(len(data)) :]
    elif kind == 2:
        position = rng.randrange(len(data))
        data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    else:  # keep the header valid JSON but change its numbers: exercises offset and shape checks
        digits = [i for i in range(8, header_end) if 48 <= data[i] <= 57]
        for i in rng.sample(digits, k=min(len(digits), rng.randint(1, 2))):
            data[i] = rng.choice(b"0123456789")
    return bytes(data)


def test_fuzz_mutated_archives_load_correctly_or_raise_format_error(tmp_path):
    rng = random.Random(1234)
    source = tmp_path / "source.lamina"
    config = {"layers": [{"units": 4}], "name": "fuzz"}
    tensors = {"kernel": torch.randn(4, 3), "bias": torch.zeros(3, dtype=torch.float16),
               "mask": torch.tensor([True, False]), "step": torch.tensor(5)}
    write_archive(source, config, tensors, {"k": "v"}, {"optimizer": {"m": torch.ones(3)}})
    original = source.read_bytes()
    target = tmp_path / "mutated.lamina"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(300):
        target.write_bytes(_mutate(original, rng))
        try:
            read_config, read_tensors, metadata, extra = read_archive(target)
        except FormatError:
            outcomes["refused"] += 1
            continue
        outcomes["loaded"] += 1
        assert read_config == config and metadata["k"] == "v"  # zip CRCs catch every data change
        _assert_same_tensors(read_tensors, tensors)
        _assert_same_tensors(extra["optimizer"], {"m": torch.ones(3)})
    assert outcomes["refused"] > 200 and outcomes["loaded"] > 0


def test_fuzz_mutated_safetensors_decode_consistently_or_raise_format_error():
    rng = random.Random(5678)
    library = None
    try:
        import safetensors.torch as library
    except ImportError:
        pass
    tensors = {"kernel": torch.randn(4, 3), "ids": torch.arange(3), "half": torch.ones(2, 2, dtype=torch.bfloat16),
               "mask": torch.tensor([True, False, True]), "empty": torch.zeros(0, 2)}
    original = encode_safetensors(tensors, {"format": "pt"})
    header_end = 8 + int.from_bytes(original[:8], "little")
    refused = 0
    for _ in range(400):
        mutated = _mutate(original, rng, header_end)
        try:
            decoded = decode_safetensors(mutated)
        except FormatError:
            refused += 1
            continue
        _assert_same_tensors(decode_safetensors(encode_safetensors(decoded)), decoded)
        if library is not None:
            _assert_same_tensors(library.load(mutated), decoded)
    assert 100 < refused < 400


# --- plain weights files and atomic writes ---------------------------------------------------

def test_weights_file_round_trips_and_respects_max_bytes(tmp_path):
    path = tmp_path / "model.weights.safetensors"
    tensors = _all_dtypes()
    write_weights_file(path, tensors)
    _assert_same_tensors(read_weights_file(path), tensors)
    with pytest.raises(FormatError, match="over the max_bytes=100 limit"):
        read_weights_file(path, max_bytes=100)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(FormatError):
        read_weights_file(path)


def _temp_files(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".lamina-tmp"))


def test_atomic_writer_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "model.lamina"
    atomic_write(path, b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_writer(path) as file:
            file.write(b"partial new content")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert _temp_files(tmp_path) == []
    with pytest.raises(TypeError):
        write_archive(path, {}, {"bad": torch.ones(1, dtype=torch.complex64)}, {})
    assert path.read_bytes() == b"old" and _temp_files(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
def test_atomic_write_keeps_permissions_of_an_existing_file(tmp_path):
    path = tmp_path / "notes.txt"
    atomic_write(path, b"one")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    path.chmod(0o600)
    atomic_write(path, b"two")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"two"


@pytest.mark.skipif(os.name != "posix", reason="stale temporary files are detected by pid on POSIX")
def test_atomic_write_removes_only_stale_temp_files(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "model.lamina"
    stale = tmp_path / f".model.lamina.{dead.pid}-0123456789ab.lamina-tmp"
    live = tmp_path / f".model.lamina.{os.getpid()}-0123456789ab.lamina-tmp"
    other = tmp_path / f".other.lamina.{dead.pid}-0123456789ab.lamina-tmp"
    for file in (stale, live, other):
        file.write_bytes(b"partial")
    atomic_write(path, b"new")
    assert not stale.exists() and live.exists() and other.exists()


CHILD_WRITER = """
import sys, time, zipfile
import torch
torch.set_num_threads(1)
from lamina.saving import archive

original_writestr = zipfile.ZipFile.writestr

def writestr_then_hang(self, info, data, *args, **kwargs):
    original_writestr(self, info, data, *args, **kwargs)
    if getattr(info, "filename", info) == archive.WEIGHTS_MEMBER:
        self.fp.flush()
        print("weights written", flush=True)
        time.sleep(120)

zipfile.ZipFile.writestr = writestr_then_hang
archive.write_archive(sys.argv[1], {"version": "new"}, {"big": torch.ones(10_000_000)}, {})
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_atomic_write_survives_sigkill_mid_write(tmp_path):
    path = tmp_path / "model.lamina"
    write_archive(path, {"version": "old"}, {"w": torch.ones(3)}, {})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(lamina.__file__).parents[1]))
    child = subprocess.Popen([sys.executable, "-c", CHILD_WRITER, str(path)], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline() == b"weights written\n"
        temps = _temp_files(tmp_path)
        assert len(temps) == 1 and f".{child.pid}-" in temps[0]
        assert (tmp_path / temps[0]).stat().st_size > 40_000_000  # killed with 40 MB already written
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    config, tensors, _, _ = read_archive(path)
    assert config == {"version": "old"} and torch.equal(tensors["w"], torch.ones(3))
    # The killed process could not remove its temporary file; the next write to the path does.
    assert len(_temp_files(tmp_path)) == 1
    write_archive(path, {"version": "newer"}, {"w": torch.zeros(1)}, {})
    assert _temp_files(tmp_path) == [] and read_archive(path)[0] == {"version": "newer"}

"""The lamina file layer: one zip of config.json + safetensors weights + metadata.json.

Owns the archive layout, crash-safe writes (``atomic_write``) and the checks that make reading
a hostile file safe; knows nothing about models (callers pass JSON dicts and tensors). Every
malformed file ends in ``FormatError``; nothing read from a file is unpickled or evaluated.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import re
import secrets
import stat
import struct
import zipfile
import zlib

import torch

from lamina.saving.safetensors import FormatError, decode_safetensors, encode_safetensors

__all__ = [
    "FormatError", "encode_safetensors", "decode_safetensors", "write_archive", "read_archive",
    "write_weights_file", "read_weights_file", "atomic_write", "atomic_writer",
    "FORMAT_VERSION", "DEFAULT_MAX_BYTES",
]

FORMAT_VERSION = "1"
DEFAULT_MAX_BYTES = 16 * 2**30  # total uncompressed bytes read_archive accepts by default
CONFIG_MEMBER, METADATA_MEMBER, WEIGHTS_MEMBER = "config.json", "metadata.json", "model.weights.safetensors"
_EXTRA_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")  # extra_tensors key; its member is f"{key}.safetensors"
_EXTRA_MEMBER = re.compile(r"([A-Za-z0-9_]{1,64})\.safetensors")
_MAX_JSON_BYTES = 64 * 2**20
_MAX_MEMBERS = 256
# Like Keras's saving_lib: above this size a member may not expand more than 100x.
_BOMB_FLOOR_BYTES, _MAX_EXPANSION = 2**28, 100
_CHUNK_BYTES = 2**20
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps keep archives of equal content byte-identical
_TEMP_SUFFIX = ".lamina-tmp"
# What a broken zip can raise from zipfile, zlib or the file object: all become FormatError.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, EOFError, OSError,
               ValueError, NotImplementedError, RuntimeError, OverflowError)


def write_archive(path, config: dict, tensors: dict, metadata: dict,
                  extra_tensors: dict | None = None) -> None:
    """Atomically write a lamina archive: one zip of JSON config, safetensors weights and metadata.

    Members: ``config.json``, ``model.weights.safetensors``, one ``<key>.safetensors`` per
    ``extra_tensors`` key (e.g. ``optimizer.safetensors``) and ``metadata.json``, which
    holds ``metadata`` plus ``lamina_version``, ``torch_version``, ``format_version`` and
    ``date_saved`` (UTC, ISO 8601); values given in ``metadata`` take precedence except
    ``format_version``.

    Args:
        path: the target file; replaced only once the new archive is complete on disk.
        config: JSON-serializable dict (e.g. a model's recursive ``get_config``).
        tensors: dict of name -> tensor, the model weights.
        metadata: JSON-serializable dict of extra facts to record.
        extra_tensors: optional dict of member key (letters, digits, ``_``) -> dict of
            tensors, such as ``{"optimizer": {...}}``. Default None.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.lamina")
    >>> write_archive(path, {"units": 2}, {"dense/kernel": torch.ones(2, 2)}, {})
    >>> read_archive(path)[0]
    {'units': 2}
    """
    extra_tensors = {} if extra_tensors is None else extra_tensors
    if not isinstance(extra_tensors, dict):
        raise TypeError(
            f"extra_tensors must be a dict of name -> tensors or None; received {type(extra_tensors).__name__}."
        )
    for key in extra_tensors:
        if not (isinstance(key, str) and _EXTRA_NAME.fullmatch(key)):
            raise ValueError(
                "extra_tensors keys name zip members, so they must be 1-64 letters, digits or '_'; "
                f"received {key!r}."
            )
    metadata = {**_default_metadata(), **_as_json_dict(metadata, "metadata"), "format_version": FORMAT_VERSION}
    members = [(CONFIG_MEMBER, _json_bytes(config, "config"), zipfile.ZIP_DEFLATED),
               (WEIGHTS_MEMBER, encode_safetensors(tensors), zipfile.ZIP_STORED)]
    for key, value in extra_tensors.items():
        members.append((f"{key}.safetensors", encode_safetensors(value), zipfile.ZIP_STORED))
    members.append((METADATA_MEMBER, _json_bytes(metadata, "metadata"), zipfile.ZIP_DEFLATED))
    with atomic_writer(path) as file, zipfile.ZipFile(file, "w") as archive:
        for name, data, compression in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = compression
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)


def read_archive(path, max_bytes: int = DEFAULT_MAX_BYTES):
    """Read and validate a lamina archive written by ``write_archive``.

    Before anything is decompressed, every member is checked: its name is one lamina writes
    (so no ``..``, absolute path or backslash), it appears once, it is a regular file (not a
    symlink), it is neither encrypted nor compressed with an unusual method, and the declared
    sizes fit ``max_bytes`` (JSON members at most 64 MiB each). The limits are enforced again
    while decompressing, since zip headers can lie.

    Args:
        path: the archive file.
        max_bytes: largest total uncompressed size accepted. Default 16 GiB.

    Returns:
        ``(config, tensors, metadata, extra)``: the config dict, the weights dict, the
        metadata dict, and a dict of key -> tensors for the other safetensors members.

    Raises:
        FormatError: the file is not a valid lamina archive; the message says why.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.lamina")
    >>> optimizer = {"step": torch.tensor(3)}
    >>> write_archive(path, {}, {"w": torch.zeros(1)}, {"note": "hi"}, {"optimizer": optimizer})
    >>> config, tensors, metadata, extra = read_archive(path)
    >>> tensors, metadata["note"], extra
    ({'w': tensor([0.])}, 'hi', {'optimizer': {'step': tensor(3)}})
    """
    with open(path, "rb") as file:
        try:
            with zipfile.ZipFile(file) as archive:
                contents = _read_members(archive, max_bytes)
        except FormatError:
            raise
        except _ZIP_ERRORS as error:
            raise FormatError(f"{os.fspath(path)!r} is not a readable zip archive: {error}") from None
    metadata = _parse_json(contents.pop(METADATA_MEMBER), METADATA_MEMBER)
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{METADATA_MEMBER} has format_version {version!r:.50}; this lamina reads version "
            f"{FORMAT_VERSION!r}. Upgrade lamina to read files from newer versions."
        )
    config = _parse_json(contents.pop(CONFIG_MEMBER), CONFIG_MEMBER)
    tensors = _decode_member(contents.pop(WEIGHTS_MEMBER), WEIGHTS_MEMBER)
    extra = {name[: -len(".safetensors")]: _decode_member(data, name) for name, data in contents.items()}
    return config, tensors, metadata, extra


def write_weights_file(path, tensors: dict) -> None:
    """Atomically write tensors to a plain safetensors file (e.g. ``model.weights.safetensors``).

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.weights.safetensors")
    >>> write_weights_file(path, {"bias": torch.tensor([1.5])})
    >>> read_weights_file(path)
    {'bias': tensor([1.5000])}
    """
    atomic_write(path, encode_safetensors(tensors))


def read_weights_file(path, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, torch.Tensor]:
    """Read a safetensors file, refusing files over ``max_bytes`` (default 16 GiB) unread.

    Raises ``FormatError`` for a malformed file. See ``write_weights_file`` for an example.
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > max_bytes:
            raise FormatError(
                f"{os.fspath(path)!r} holds {size} bytes, over the max_bytes={max_bytes} limit."
            )
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FormatError(f"{os.fspath(path)!r} grew past the max_bytes={max_bytes} limit while being read.")
    return decode_safetensors(data)


def atomic_write(path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old file or the new one, never a mix.

    Example:
    >>> import os, pathlib, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> atomic_write(path, b"v1")
    >>> pathlib.Path(path).read_bytes()
    b'v1'
    """
    with atomic_writer(path) as file:
        file.write(data)


@contextlib.contextmanager
def atomic_writer(path):
    """Context manager yielding a binary file whose content replaces ``path`` on success.

    Writes go to a temporary file in the same folder; on exit it is flushed and fsynced,
    ``os.replace``-d onto ``path`` and the folder is fsynced, so a crash or power loss leaves
    either the old or the new file. On an exception the temporary file is removed and
    ``path`` is untouched. A process killed mid-write (SIGKILL) cannot clean up: its temporary
    file ``.<name>.<pid>-<random>.lamina-tmp`` stays until the next write to the same path
    removes it (on POSIX, once the process ``<pid>`` no longer exists).

    Example:
    >>> import os, pathlib, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with atomic_writer(path) as file:
    ...     _ = file.write(b"hello")
    >>> pathlib.Path(path).read_bytes()
    b'hello'
    """
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    prefix = f".{base[:100]}."  # keeps the temporary name under the 255-byte NAME_MAX
    _remove_stale_temps(folder, prefix)
    temp = os.path.join(folder, f"{prefix}{os.getpid()}-{secrets.token_hex(6)}{_TEMP_SUFFIX}")
    # O_EXCL: never reuse an existing file; mode 0o666 lets the umask decide, like open().
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(temp, stat.S_IMODE(os.stat(path).st_mode))  # keep an existing file's permissions
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp)
        raise
    _fsync_folder(folder)


def _remove_stale_temps(folder: str, prefix: str) -> None:
    """Delete temporary files of this target left by processes that no longer exist."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            match = re.fullmatch(re.escape(prefix) + r"(\d+)-[0-9a-f]{12}" + re.escape(_TEMP_SUFFIX), name)
            if match and not _process_exists(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _fsync_folder(folder: str) -> None:
    """Persist the rename itself; folders cannot be opened for fsync on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _default_metadata() -> dict:
    try:
        version = importlib.metadata.version("lamina")
    except importlib.metadata.PackageNotFoundError:
        import lamina

        version = getattr(lamina, "__version__", "unknown")
    return {
        "lamina_version": version,
        "torch_version": str(torch.__version__),
        "format_version": FORMAT_VERSION,
        "date_saved": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _as_json_dict(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict; received {type(value).__name__}.")
    return value


def _json_bytes(value, what: str) -> bytes:
    try:
        return json.dumps(_as_json_dict(value, what)).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{what} must hold only JSON types (dict, list, str, int, float, bool, None): {error}. "
            "Convert other values (tensors, numpy scalars, tuples as keys) first."
        ) from None


# Returned by a membership rule for members that are allowed but never read (Keras assets).
SKIP_MEMBER = "skip"


def _lamina_membership(name: str) -> str | None:
    if name not in (CONFIG_MEMBER, METADATA_MEMBER, WEIGHTS_MEMBER) and not _EXTRA_MEMBER.fullmatch(name):
        return (
            f"is not a lamina member (expected {CONFIG_MEMBER}, {METADATA_MEMBER}, {WEIGHTS_MEMBER} "
            "or <name>.safetensors); the file was not written by lamina"
        )
    return None


def _member_problem(info: zipfile.ZipInfo, max_bytes: int, membership=_lamina_membership) -> str | None:
    """Why this member may not be read, or None; decided from its headers alone.

    ``membership(name)`` says whether the name belongs in this kind of archive: None if it
    does, ``SKIP_MEMBER`` if it may be present but is never read, else the reason it may not.
    The checks shared by every zip lamina reads (paths, links, encryption, sizes) live here.
    """
    name = info.filename
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "is an absolute path"
    if "\\" in name or "\x00" in name:
        return "contains a backslash or NUL"
    if ".." in name.split("/"):
        return "climbs out of the archive with '..'"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    verdict = membership(name)
    if verdict == SKIP_MEMBER:
        return None
    if name.endswith("/") or stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return "is not a regular file"
    if verdict is not None:
        return verdict
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"uses compression method {info.compress_type}; lamina reads only stored or deflated members"
    limit = _MAX_JSON_BYTES if name.endswith(".json") else max_bytes
    if info.file_size > limit:
        return f"declares {info.file_size} uncompressed bytes, over the {limit}-byte limit"
    if info.file_size > _BOMB_FLOOR_BYTES and info.file_size > _MAX_EXPANSION * info.compress_size:
        return f"expands {info.compress_size} bytes to {info.file_size}, which looks like a zip bomb"
    return None


def _read_members(archive: zipfile.ZipFile, max_bytes: int) -> dict[str, bytes]:
    """Check every member's headers, then decompress each within its declared size."""
    infos = archive.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise FormatError(f"the archive has {len(infos)} members; lamina archives have at most {_MAX_MEMBERS}.")
    names = [info.filename for info in infos]
    for info in infos:
        problem = _member_problem(info, max_bytes)
        if problem:
            raise FormatError(f"archive member {info.filename!r:.200} {problem}.")
        if names.count(info.filename) > 1:
            raise FormatError(f"archive member {info.filename!r} appears {names.count(info.filename)} times.")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise FormatError(
            f"the archive declares {total} uncompressed bytes, over the max_bytes={max_bytes} limit."
        )
    missing = [name for name in (CONFIG_MEMBER, WEIGHTS_MEMBER, METADATA_MEMBER) if name not in names]
    if missing:
        raise FormatError(f"the archive lacks {missing}; it is not a lamina archive or it is damaged.")
    return {info.filename: _read_member(archive, info) for info in infos}


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    data = bytearray()
    with archive.open(info) as member:
        while chunk := member.read(min(_CHUNK_BYTES, info.file_size + 1 - len(data))):
            data += chunk
            if len(data) > info.file_size:
                raise FormatError(
                    f"archive member {info.filename!r} holds more than its declared {info.file_size} bytes."
                )
    if len(data) != info.file_size:
        raise FormatError(
            f"archive member {info.filename!r} holds {len(data)} bytes, not its declared {info.file_size}."
        )
    return bytes(data)


def _decode_member(data: bytes, name: str) -> dict[str, torch.Tensor]:
    try:
        return decode_safetensors(data)
    except FormatError as error:
        raise FormatError(f"archive member {name}: {error}") from None


def _parse_json(data: bytes, name: str) -> dict:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise FormatError(f"archive member {name} is not valid UTF-8 JSON: {error}") from None
    if not isinstance(value, dict):
        raise FormatError(
            f"archive member {name} must hold a JSON object; it holds a {type(value).__name__}."
        )
    return value

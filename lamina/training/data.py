"""Turns what users pass to fit/evaluate/predict into batches of tensors on the training device.

Arrays, tensors, lists and dicts of them, and pandas objects become tensors once and
are batched by slicing with a (shuffled) index: no per-sample collation; one batch
holding every sample passes them whole, which lets sparse inputs (graph operators, which
cannot be sliced) through. Python generators, ``torch.utils.data.Dataset`` and
``DataLoader`` are iterated and their batches converted. This module owns batching; the Trainer owns the loop.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Iterator

import numpy as np
import torch

from lamina import config

__all__ = ["to_tensor", "make_batches", "ArrayBatches", "HostBatches", "IterableBatches", "split_validation",
           "num_samples"]

# Arrays larger than this fraction of a GPU's free memory stay in host memory and are
# copied to the device batch by batch (HostBatches); smaller ones move to the device once.
STREAM_ABOVE_FREE_FRACTION = 0.25


def to_tensor(value, device: torch.device | None = None):
    """Convert an array-like (or a list/tuple/dict of them) to tensors on ``device``.

    Floats become ``floatx()`` (NumPy's float64 included, as Keras does), integers
    stay integers (int64), booleans stay booleans.

    >>> import numpy as np
    >>> to_tensor(np.zeros((2, 3))).dtype
    torch.float32
    >>> to_tensor([np.arange(2), np.ones(2)])[0].dtype
    torch.int64
    """
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: to_tensor(v, device) for k, v in value.items()}
    if _is_scipy_sparse(value):
        coo = value.tocoo()
        indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        data = np.asarray(coo.data)
        data = data.astype(config.floatx()) if data.dtype.kind == "f" else data
        from lamina.graph import _coo

        value = _coo(indices, torch.from_numpy(data), tuple(coo.shape))
    if isinstance(value, (list, tuple)) and value and _is_array_like(value[0]) and not np.isscalar(value[0]):
        if isinstance(value[0], (list, tuple)) and value[0] and np.isscalar(value[0][0]):
            raise TypeError(
                "Received a nested Python list of numbers. Like Keras, lamina does not guess "
                "whether it is one input or one list per input: pass np.asarray(...) for one "
                "input, or a list of NumPy arrays, one per model input."
            )
        return type(value)(to_tensor(v, device) for v in value)
    if isinstance(value, torch.Tensor):
        tensor = value
        if tensor.is_floating_point() and tensor.dtype == torch.float64:
            tensor = tensor.to(config.torch_dtype())
    else:
        if hasattr(value, "to_numpy"):  # pandas DataFrame / Series
            value = value.to_numpy()
        array = np.asarray(value)
        if array.dtype == object:
            raise TypeError(
                f"Could not convert input of type {type(value).__name__} with dtype=object to a "
                f"tensor. Pass numeric NumPy arrays (or lists/dicts of them)."
            )
        if array.dtype.kind == "f":
            array = np.ascontiguousarray(array, dtype=config.floatx())
        elif array.dtype.kind in "iu":
            array = np.ascontiguousarray(array.astype(np.int64, copy=False))
        else:
            array = np.ascontiguousarray(array)
        if not array.flags.writeable:
            # torch cannot share read-only memory (pandas copy-on-write, np.load mmap): copy it.
            array = array.copy()
        tensor = torch.from_numpy(array)
    if device is not None and tensor.device != device:
        tensor = tensor.to(device, non_blocking=tensor.is_pinned())
    return tensor


def _is_array_like(value) -> bool:
    return (isinstance(value, (np.ndarray, torch.Tensor, list, tuple)) or hasattr(value, "to_numpy")
            or np.isscalar(value) or _is_scipy_sparse(value))


def _is_scipy_sparse(value) -> bool:
    # Duck-typed, so that scipy is never imported here.
    return type(value).__module__.startswith("scipy.sparse") and hasattr(value, "tocoo")


def _is_sparse(tensor) -> bool:
    return isinstance(tensor, torch.Tensor) and tensor.layout != torch.strided


def _flat(structure) -> list:
    if structure is None:
        return []
    if isinstance(structure, dict):
        return [t for v in structure.values() for t in _flat(v)]
    if isinstance(structure, (list, tuple)):
        return [t for v in structure for t in _flat(v)]
    return [structure]


def _map(fn, structure):
    if structure is None:
        return None
    if isinstance(structure, dict):
        return {k: _map(fn, v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_map(fn, v) for v in structure)
    return fn(structure)


def num_samples(structure) -> int:
    """Number of samples (first-axis length) shared by every tensor in ``structure``."""
    return int(_flat(structure)[0].shape[0])


def _is_iterable_source(x) -> bool:
    if isinstance(x, (np.ndarray, torch.Tensor, list, tuple, dict)) or hasattr(x, "to_numpy") or _is_scipy_sparse(x):
        return False
    return isinstance(x, torch.utils.data.Dataset) or hasattr(x, "__next__") or hasattr(x, "__iter__")


def _check_lengths(x, y, sample_weight) -> None:
    sizes = {}
    for label, structure in (("x", x), ("y", y), ("sample_weight", sample_weight)):
        for tensor in _flat(structure):
            if tensor.ndim == 0:
                raise ValueError(
                    f"Expected {label} to be an array with a batch axis; received a scalar. "
                    f"Pass arrays shaped (num_samples, ...)."
                )
            sizes.setdefault(label, set()).add(int(tensor.shape[0]))
    for label, found in sizes.items():
        if len(found) > 1:
            raise ValueError(
                f"All arrays in {label} must have the same number of samples; received sizes "
                f"{sorted(found)}. Make every input array's first axis the sample axis."
            )
    if len({next(iter(v)) for v in sizes.values()}) > 1:
        detail = ", ".join(f"{k} has {next(iter(v))} samples" for k, v in sizes.items())
        raise ValueError(
            f"Data cardinality is ambiguous: {detail}. Make sure x, y and sample_weight all "
            f"contain the same number of samples."
        )


class ArrayBatches:
    """Batches of in-memory tensors, sliced with a shuffled index each epoch.

    Args:
        x, y, sample_weight: tensors (or lists/dicts of tensors) already on the device.
        batch_size: samples per batch.
        shuffle: ``True``, ``False`` or ``"batch"`` (shuffle batch order only).
        steps: optional cap on batches per epoch.

    >>> import torch
    >>> batches = ArrayBatches(torch.arange(5.0)[:, None], torch.arange(5), None, batch_size=2)
    >>> [tuple(b[0].shape) for b in batches]
    [(2, 1), (2, 1), (1, 1)]
    """

    def __init__(self, x, y, sample_weight, batch_size: int = 32, shuffle=False, steps: int | None = None):
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.size = num_samples(x)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.num_batches = math.ceil(self.size / self.batch_size)
        if steps is not None:
            self.num_batches = min(self.num_batches, int(steps)) if steps > 0 else self.num_batches
        self._device = _flat(x)[0].device
        sparse = [t for s in (x, y, sample_weight) for t in _flat(s) if _is_sparse(t)]
        if sparse and self.batch_size < self.size:
            raise ValueError(
                f"Received a sparse tensor of shape {tuple(sparse[0].shape)}: sparse inputs (e.g. a "
                f"graph's adjacency matrix) are passed whole, so one batch must cover all "
                f"{self.size} samples, but batch_size={self.batch_size}. Pass batch_size={self.size}."
            )

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple]:
        size, bs = self.size, self.batch_size
        if bs >= size and self.num_batches == 1:
            # One batch holding every sample: pass the tensors whole, unshuffled (the order of
            # samples within one batch does not change the loss), so sparse tensors and a graph's
            # node axis (features and adjacency rows must stay aligned) go through unchanged.
            yield self.x, self.y, self.sample_weight
            return
        x, y, sample_weight = self.x, self.y, self.sample_weight
        # Plain tensors (or None) are sliced inline: no per-batch closures or structure walks
        # (predict at a small batch size runs this thousands of times).
        plain = all(s is None or isinstance(s, torch.Tensor) for s in (x, y, sample_weight))
        if self.shuffle is True or self.shuffle == "full":
            order = torch.randperm(size, device=self._device)
            for i in range(self.num_batches):
                index = order[i * bs:(i + 1) * bs]
                if plain:
                    yield (x.index_select(0, index), None if y is None else y.index_select(0, index),
                           None if sample_weight is None else sample_weight.index_select(0, index))
                else:
                    yield tuple(_map(lambda t: t.index_select(0, index), s) for s in (x, y, sample_weight))
            return
        starts = list(range(0, size, bs))[: self.num_batches]
        if self.shuffle == "batch":
            starts = [starts[i] for i in torch.randperm(len(starts)).tolist()]
        for start in starts:
            stop = start + bs
            if plain:
                yield (x[start:stop], None if y is None else y[start:stop],
                       None if sample_weight is None else sample_weight[start:stop])
            else:
                yield tuple(_map(lambda t: t[start:stop], s) for s in (x, y, sample_weight))


class HostBatches:
    """Batches of host-memory arrays, each copied to the device as it is needed.

    For data too large to move to a GPU at once (see ``STREAM_ABOVE_FREE_FRACTION``):
    ``batches`` (an ``ArrayBatches`` over host tensors) slices and shuffles in host memory;
    each batch is staged in a pinned (page-locked) buffer and copied with
    ``non_blocking=True``, so the copy overlaps the host's work on the next batch. Two
    sets of buffers alternate, and a buffer is refilled only after the device has finished
    copying out of it (a CUDA event). Without CUDA the staging buffers are ordinary memory.

    >>> import torch
    >>> host = ArrayBatches(torch.arange(6.0)[:, None], None, None, batch_size=4)
    >>> [b[0].flatten().tolist() for b in HostBatches(host, torch.device("cpu"))]
    [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0]]
    """

    def __init__(self, batches: ArrayBatches, device: torch.device):
        self.batches, self.device = batches, torch.device(device)
        self.size, self.batch_size, self.num_batches = batches.size, batches.batch_size, batches.num_batches
        self._cuda = self.device.type == "cuda" and torch.cuda.is_available()
        self._buffers: dict = {}

    def __len__(self) -> int:
        return self.num_batches

    def _send(self, tensor, key):
        if tensor is None or _is_sparse(tensor) or tensor.device.type != "cpu":
            return tensor if tensor is None else tensor.to(self.device)
        buffer = self._buffers.get(key)
        rows = max(self.batch_size, tensor.shape[0])
        if buffer is None or buffer.shape[1:] != tensor.shape[1:] or buffer.dtype != tensor.dtype or len(buffer) < rows:
            buffer = self._buffers[key] = torch.empty((rows, *tensor.shape[1:]), dtype=tensor.dtype,
                                                      pin_memory=self._cuda)
        staged = buffer[:tensor.shape[0]]
        staged.copy_(tensor)
        return staged.to(self.device, non_blocking=self._cuda)

    def __iter__(self):
        events = [None, None]
        for step, batch in enumerate(self.batches):
            slot = step % 2
            if events[slot] is not None:
                events[slot].synchronize()  # the copies out of this slot's buffers are done
            counter = itertools.count()  # one staging buffer per tensor of the batch
            moved = tuple(_map(lambda t: self._send(t, (slot, next(counter))), part) for part in batch)
            if self._cuda:
                events[slot] = torch.cuda.Event()
                events[slot].record(torch.cuda.current_stream(self.device))
            yield moved


def _stream_from_host(structures, device) -> bool:
    """Whether host arrays should stay in host memory (HostBatches) on this device."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    tensors = [t for s in structures for t in _flat(s) if isinstance(t, torch.Tensor)]
    if not tensors or any(_is_sparse(t) or t.device.type != "cpu" for t in tensors):
        return False
    nbytes = sum(t.element_size() * t.nelement() for t in tensors)
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes > STREAM_ABOVE_FREE_FRACTION * free


class IterableBatches:
    """Batches from a generator, ``Dataset`` or ``DataLoader``, converted to tensors on the device.

    Each item must be ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``.
    A generator is consumed once; ``steps`` caps the batches per epoch.
    """

    def __init__(self, source, device: torch.device, batch_size: int = 32, shuffle=False,
                 steps: int | None = None):
        if isinstance(source, torch.utils.data.Dataset) and not isinstance(source, torch.utils.data.IterableDataset):
            source = torch.utils.data.DataLoader(source, batch_size=batch_size, shuffle=bool(shuffle))
        self.source = source
        self.device = device
        self.steps = steps
        self._iterator = None
        try:
            self.num_batches = len(source) if steps is None else int(steps)
        except TypeError:
            self.num_batches = steps

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("The number of batches of this generator is unknown.")
        return self.num_batches

    def __iter__(self):
        reusable = not hasattr(self.source, "__next__")
        if reusable and (self.steps is None or self._iterator is None):
            self._iterator = iter(self.source)
        elif self._iterator is None:
            self._iterator = self.source
        count, restarted = 0, False
        while self.steps is None or count < self.steps:
            try:
                item = next(self._iterator)
            except StopIteration:
                # With steps_per_epoch, a Dataset/DataLoader starts a new pass when the
                # previous one ended, also exactly at an epoch boundary; `restarted`
                # stops an empty source from looping forever.
                if reusable and self.steps is not None and not restarted:
                    self._iterator = iter(self.source)
                    restarted = True
                    continue
                if count == 0:
                    warnings.warn(
                        "Your input ran out of data; interrupting training. Make sure that your "
                        "dataset or generator can generate at least `steps_per_epoch * epochs` "
                        "batches.", UserWarning, stacklevel=2)
                self._iterator = None if reusable else self._iterator
                return
            count, restarted = count + 1, False
            yield unpack(item, self.device)


def unpack(item, device) -> tuple:
    """``x`` / ``(x,)`` / ``(x, y)`` / ``(x, y, sample_weight)`` → a 3-tuple of device tensors."""
    if isinstance(item, (list, tuple)) and not isinstance(item, torch.Tensor):
        if len(item) == 1:
            item = (item[0], None, None)
        elif len(item) == 2:
            item = (item[0], item[1], None)
        elif len(item) == 3:
            item = tuple(item)
        else:
            raise ValueError(
                f"Data items must be x, (x,), (x, y) or (x, y, sample_weight); received a "
                f"{type(item).__name__} of length {len(item)}."
            )
    else:
        item = (item, None, None)
    return tuple(to_tensor(part, device) for part in item)


def split_validation(x, y, sample_weight, validation_split: float):
    """Keras's ``validation_split``: the LAST fraction of the samples, taken before shuffling."""
    if not 0 < validation_split < 1:
        raise ValueError(
            f"validation_split must be a float between 0 and 1; received {validation_split!r}."
        )
    size = num_samples(x)
    if any(_is_sparse(t) for s in (x, y, sample_weight) for t in _flat(s)):
        raise ValueError(
            "validation_split cannot split sparse inputs (such as a graph's adjacency matrix). "
            "Pass validation_data=... instead, or a sample_weight mask for the training nodes."
        )
    cut = int(math.floor(size * (1.0 - validation_split)))
    if cut == 0 or cut == size:
        raise ValueError(
            f"validation_split={validation_split} leaves no samples on one side of the split of "
            f"{size} samples. Use more data or a different validation_split."
        )
    head = lambda s: _map(lambda t: t[:cut], s)  # noqa: E731
    tail = lambda s: _map(lambda t: t[cut:], s)  # noqa: E731
    return (head(x), head(y), head(sample_weight)), (tail(x), tail(y), tail(sample_weight))


def make_batches(x, y=None, sample_weight=None, *, batch_size=None, shuffle=False, steps=None,
                 device=None):
    """The one entry point: return a re-iterable source of ``(x, y, sample_weight)`` batches."""
    device = device or config.get_device()
    if x is None:
        raise ValueError("Expected input data x; received None. Pass arrays, tensors or a dataset.")
    if _is_iterable_source(x):
        if y is not None or sample_weight is not None:
            raise ValueError(
                f"When x is a generator, Dataset or DataLoader, y and sample_weight must be "
                f"part of it; received x of type {type(x).__name__} and a separate "
                f"{'y' if y is not None else 'sample_weight'}. Yield (x, y) or (x, y, sample_weight)."
            )
        return IterableBatches(x, device, batch_size or 32, shuffle, steps)
    x, y, sample_weight = (to_tensor(v) for v in (x, y, sample_weight))
    _check_lengths(x, y, sample_weight)
    if _stream_from_host((x, y, sample_weight), device):
        return HostBatches(ArrayBatches(x, y, sample_weight, batch_size or 32, shuffle, steps), device)
    x, y, sample_weight = (to_tensor(v, device) for v in (x, y, sample_weight))
    return ArrayBatches(x, y, sample_weight, batch_size or 32, shuffle, steps)

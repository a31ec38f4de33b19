"""Tests for lamina.training.data: conversion to tensors, batching, validation split."""

import numpy as np
import pytest
import torch

from lamina.training import data
from lamina.training.data import ArrayBatches, IterableBatches, make_batches, split_validation, to_tensor

CPU = torch.device("cpu")


# ---------------------------------------------------------------- to_tensor
@pytest.mark.parametrize(
    "value, dtype",
    [
        (np.zeros((2, 3), dtype=np.float64), torch.float32),
        (np.zeros((2, 3), dtype=np.float16), torch.float32),
        (np.zeros(3, dtype=np.int32), torch.int64),
        (np.zeros(3, dtype=np.uint8), torch.int64),
        (np.zeros(3, dtype=bool), torch.bool),
        (torch.zeros(3, dtype=torch.float64), torch.float32),
        (torch.zeros(3, dtype=torch.int32), torch.int32),
        ([1.5, 2.5], torch.float32),
        ([1, 2], torch.int64),
    ],
)
def test_to_tensor_dtypes(value, dtype):
    assert to_tensor(value).dtype == dtype


def test_to_tensor_keeps_values_and_structure():
    x = {"a": np.arange(6.0).reshape(3, 2), "b": [np.arange(3), np.ones((3, 1))]}
    out = to_tensor(x, CPU)
    assert set(out) == {"a", "b"} and isinstance(out["b"], list)
    np.testing.assert_array_equal(out["a"].numpy(), x["a"])
    assert out["b"][0].dtype == torch.int64 and out["b"][1].dtype == torch.float32
    assert to_tensor(None) is None


def test_to_tensor_rejects_nested_python_lists():
    with pytest.raises(TypeError, match=r"np\.asarray"):
        to_tensor([[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_to_tensor_copies_read_only_arrays(dtype):
    array = np.arange(4, dtype=dtype)
    array.flags.writeable = False  # as pandas copy-on-write or np.load(mmap_mode="r") give
    tensor = to_tensor(array)  # no torch "non-writable" warning (warnings are errors here)
    tensor += 1
    np.testing.assert_array_equal(array, np.arange(4))


def test_to_tensor_follows_floatx():
    from lamina import config

    config.set_floatx("float64")
    assert to_tensor(np.zeros(2, dtype=np.float32)).dtype == torch.float64


def test_to_tensor_rejects_object_arrays():
    with pytest.raises(TypeError, match="dtype=object"):
        to_tensor(np.array([{"a": 1}, None], dtype=object))


def test_to_tensor_pandas_dataframe():
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    out = to_tensor(frame)
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), [[1, 3], [2, 4]])
    assert to_tensor(pandas.Series([1, 2, 3])).dtype == torch.int64
    assert not data._is_iterable_source(frame)


# ---------------------------------------------------------------- ArrayBatches
def _index_batches(size, batch_size, shuffle, steps=None):
    x = torch.arange(size, dtype=torch.float32)[:, None]
    y = torch.arange(size)
    return ArrayBatches(x, y, None, batch_size=batch_size, shuffle=shuffle, steps=steps)


def test_array_batches_shuffle_covers_every_sample_once_per_epoch():
    batches = _index_batches(103, 10, shuffle=True)
    orders = []
    for _ in range(3):
        seen = [batch[1] for batch in batches]
        assert [len(b) for b in seen] == [10] * 10 + [3]
        order = torch.cat(seen).tolist()
        assert sorted(order) == list(range(103))
        orders.append(order)
    assert orders[0] != list(range(103)) and orders[0] != orders[1]


def test_array_batches_shuffle_keeps_x_and_y_aligned():
    for x, y, sw in _index_batches(50, 8, shuffle=True):
        assert sw is None
        torch.testing.assert_close(x[:, 0], y.float())


def test_array_batches_no_shuffle_keeps_order():
    batches = _index_batches(10, 4, shuffle=False)
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(batches) == 3


def test_array_batches_batch_shuffle_keeps_batches_whole():
    torch.manual_seed(3)
    batches = _index_batches(12, 3, shuffle="batch")
    seen = [b[1].tolist() for b in batches]
    assert sorted(seen) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]


def test_array_batches_steps_caps_batches():
    batches = _index_batches(10, 2, shuffle=False, steps=3)
    assert len(batches) == 3
    assert torch.cat([b[1] for b in batches]).tolist() == [0, 1, 2, 3, 4, 5]


def test_array_batches_slices_structures():
    x = {"a": torch.arange(5.0)[:, None], "b": [torch.zeros(5, 2)]}
    sw = torch.arange(5.0)
    (bx, by, bsw), _, _ = list(ArrayBatches(x, None, sw, batch_size=2))
    assert bx["a"].shape == (2, 1) and bx["b"][0].shape == (2, 2)
    assert by is None and bsw.tolist() == [0.0, 1.0]


def test_array_batches_ops_per_batch_not_per_sample():
    # A per-sample Python loop (or collation) costs ops proportional to the samples;
    # slicing with a shuffled index costs a few ops per batch.
    calls = []

    class Counter(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            calls.append(func)
            return func(*args, **(kwargs or {}))

    batches = _index_batches(2000, 1000, shuffle=True)
    with Counter():
        out = list(batches)
    assert len(out) == 2
    assert len(calls) < 40


# ---------------------------------------------------------------- IterableBatches
def _generator(n_batches, with_weights=False):
    for i in range(n_batches):
        x = np.full((2, 3), i, dtype=np.float64)
        y = np.full((2,), i, dtype=np.int32)
        yield (x, y, np.ones(2)) if with_weights else (x, y)


def test_iterable_batches_generator_with_steps_continues_across_epochs():
    batches = IterableBatches(_generator(6), CPU, steps=2)
    first = [int(b[1][0]) for b in batches]
    second = [int(b[1][0]) for b in batches]
    assert (first, second) == ([0, 1], [2, 3])
    x, y, sw = next(iter(batches))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and sw is None


def test_iterable_batches_generator_unpacks_sample_weight():
    x, y, sw = next(iter(IterableBatches(_generator(1, with_weights=True), CPU)))
    assert sw.dtype == torch.float32 and sw.shape == (2,)


def test_iterable_batches_exhausted_generator_warns():
    batches = IterableBatches(_generator(2), CPU)
    assert len(list(batches)) == 2
    with pytest.warns(UserWarning, match="ran out of data"):
        assert list(batches) == []


def test_iterable_batches_dataset_becomes_batched_loader():
    dataset = torch.utils.data.TensorDataset(torch.arange(10.0)[:, None], torch.arange(10))
    batches = IterableBatches(dataset, CPU, batch_size=4, shuffle=False)
    assert len(batches) == 3
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_iterable_batches_dataloader_with_steps_restarts_each_epoch():
    dataset = torch.utils.data.TensorDataset(torch.arange(6.0)[:, None], torch.arange(6))
    batches = IterableBatches(torch.utils.data.DataLoader(dataset, batch_size=2), CPU, steps=3)
    for _ in range(3):  # an exact multiple of the loader's length: a fresh pass each epoch
        assert [b[1].tolist() for b in batches] == [[0, 1], [2, 3], [4, 5]]


def test_iterable_batches_rejects_long_items():
    with pytest.raises(ValueError, match="length 4"):
        list(IterableBatches(iter([(1, 2, 3, 4)]), CPU))


@pytest.mark.parametrize("item", [np.zeros((2, 1)), (np.zeros((2, 1)),)])
def test_unpack_x_only(item):
    x, y, sw = data.unpack(item, CPU)
    assert x.shape == (2, 1) and y is None and sw is None


# ---------------------------------------------------------------- split and make_batches
def test_split_validation_takes_the_last_fraction():
    x = torch.arange(10.0)[:, None]
    y = torch.arange(10)
    (tx, ty, tsw), (vx, vy, vsw) = split_validation(x, y, None, 0.25)
    # floor(10 * 0.75) = 7, as Keras computes split_at
    assert ty.tolist() == list(range(7)) and vy.tolist() == [7, 8, 9]
    assert tx.shape == (7, 1) and tsw is None and vsw is None


@pytest.mark.parametrize("split", [0.0, 1.0, -0.1, 1.5])
def test_split_validation_rejects_out_of_range(split):
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_validation(torch.zeros(10, 1), None, None, split)


def test_split_validation_rejects_empty_side():
    with pytest.raises(ValueError, match="leaves no samples"):
        split_validation(torch.zeros(3, 1), None, None, 0.7)


def test_make_batches_length_mismatch_names_both_sizes():
    with pytest.raises(ValueError, match=r"x has 20 samples, y has 15 samples"):
        make_batches(np.zeros((20, 2)), np.zeros(15), device=CPU)


def test_make_batches_rejects_y_with_generator():
    with pytest.raises(ValueError, match="must be part of it"):
        make_batches(_generator(1), np.zeros(2), device=CPU)


def test_make_batches_rejects_none():
    with pytest.raises(ValueError, match="received None"):
        make_batches(None, device=CPU)


def test_make_batches_default_batch_size_is_32():
    batches = make_batches(np.zeros((70, 2)), np.zeros(70), device=CPU)
    assert isinstance(batches, ArrayBatches) and batches.batch_size == 32 and len(batches) == 3


def test_num_samples_of_structure():
    assert data.num_samples({"a": torch.zeros(4, 2), "b": torch.zeros(4)}) == 4


def test_host_batches_match_array_batches_with_shuffle():
    x = torch.arange(30.0).reshape(10, 3)
    y = {"a": torch.arange(10), "b": torch.arange(10.0) * 2}
    weights = torch.linspace(0, 1, 10)
    torch.manual_seed(3)
    expected = [tuple(b) for b in ArrayBatches(x, y, weights, batch_size=4, shuffle=True)]
    torch.manual_seed(3)
    host = data.HostBatches(ArrayBatches(x, y, weights, batch_size=4, shuffle=True), torch.device("cpu"))
    assert len(host) == 3 and host.size == 10 and host.batch_size == 4
    got = []
    for bx, by, bw in host:  # staged buffers are reused: copy each batch before the next
        got.append((bx.clone(), {k: v.clone() for k, v in by.items()}, bw.clone()))
    assert [b[0].shape[0] for b in got] == [4, 4, 2]
    for (ex, ey, ew), (gx, gy, gw) in zip(expected, got):
        assert torch.equal(ex, gx) and torch.equal(ew, gw)
        assert all(torch.equal(ey[k], gy[k]) for k in ey)
    # x, y["a"], y["b"] and the weights each stage into a buffer of their own (two slots).
    assert len(host._buffers) == 8


def test_make_batches_streams_large_host_data(monkeypatch):
    monkeypatch.setattr(data, "_stream_from_host", lambda structures, device: True)
    batches = make_batches(np.ones((5, 2)), np.zeros(5), batch_size=2, device=torch.device("cpu"))
    assert isinstance(batches, data.HostBatches)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]


def test_no_streaming_without_cuda():
    tensors = (torch.ones(1000, 10), None, None)
    assert not data._stream_from_host(tensors, torch.device("cpu"))


def test_fit_and_predict_with_streamed_batches_match(monkeypatch):
    import lamina
    from lamina.layers import Dense

    rng = np.random.RandomState(0)
    x, y = rng.randn(50, 4).astype("float32"), rng.randn(50, 1).astype("float32")

    def run():
        lamina.utils.set_random_seed(1)
        model = lamina.Sequential([lamina.Input((4,)), Dense(3, activation="tanh"), Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(x, y, batch_size=8, epochs=2, validation_split=0.2, shuffle=False, verbose=0).history
        return history, model.predict(x, batch_size=16, verbose=0)

    plain_history, plain_pred = run()
    monkeypatch.setattr(data, "_stream_from_host", lambda structures, device: True)
    streamed_history, streamed_pred = run()
    np.testing.assert_allclose(streamed_history["loss"], plain_history["loss"], rtol=1e-6)
    np.testing.assert_allclose(streamed_history["val_loss"], plain_history["val_loss"], rtol=1e-6)
    np.testing.assert_allclose(streamed_pred, plain_pred, rtol=1e-6)

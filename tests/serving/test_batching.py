"""Tests for lamina.serving.batching: merging concurrent requests, isolation, chunking, shutdown."""

import threading
import time

import numpy as np
import pytest

from lamina.serving.batching import DynamicBatcher, Overloaded, Unavailable


class _Recorder:
    """A predict function that doubles its input and records the batch sizes it saw."""

    def __init__(self, delay=0.0, gate=None):
        self.sizes, self.delay, self.gate = [], delay, gate

    def __call__(self, arrays):
        if self.gate is not None:
            self.gate.wait(5)
        self.sizes.append(arrays[0].shape[0])
        time.sleep(self.delay)
        if (arrays[0] < 0).any():
            raise ValueError("negative input")
        return [arrays[0] * 2.0, arrays[0].sum(axis=1, keepdims=True)]


def _rows(start, count, width=3):
    return np.arange(start, start + count * width, dtype="float32").reshape(count, width)


def _occupy(batcher):
    """Submit one row and wait until the worker holds it (blocked in predict at the gate)."""
    future = batcher.submit([_rows(0, 1)])
    time.sleep(0.05)
    return future


@pytest.fixture
def started():
    batchers = []

    def make(predict, **kwargs):
        batcher = DynamicBatcher(predict, **kwargs)
        batcher.start()
        batchers.append(batcher)
        return batcher

    yield make
    for batcher in batchers:
        batcher.close()


def test_batcher_merges_waiting_requests_and_splits_results(started):
    gate = threading.Event()
    predict = _Recorder(gate=gate)
    batcher = started(predict, max_batch_size=64, max_delay_ms=0)
    first = batcher.submit([_rows(0, 1)])  # occupies the worker until the gate opens
    time.sleep(0.05)
    futures = [batcher.submit([_rows(10 * i, i)]) for i in range(1, 6)]
    gate.set()
    assert np.array_equal(first.result(5)[0], _rows(0, 1) * 2)
    for i, future in enumerate(futures, start=1):
        doubled, total = future.result(5)
        np.testing.assert_array_equal(doubled, _rows(10 * i, i) * 2)
        np.testing.assert_array_equal(total, _rows(10 * i, i).sum(axis=1, keepdims=True))
    assert predict.sizes == [1, 15]
    stats = batcher.stats()
    assert (stats["requests"], stats["rows"], stats["batches"], stats["largest_batch"]) == (6, 16, 2, 15)
    assert stats["mean_batch_size"] == 8.0


def test_batcher_never_exceeds_max_batch_size(started):
    gate = threading.Event()
    predict = _Recorder(gate=gate)
    batcher = started(predict, max_batch_size=4, max_delay_ms=20)
    futures = [_occupy(batcher)] + [batcher.submit([_rows(i, 1)]) for i in range(10)]
    gate.set()
    for future in futures:
        future.result(5)
    assert predict.sizes == [1, 4, 4, 2]


def test_batcher_lone_client_does_not_wait(started):
    batcher = started(_Recorder(), max_batch_size=64, max_delay_ms=500)
    start = time.perf_counter()
    for i in range(3):
        batcher.submit([_rows(i, 1)]).result(5)
    assert time.perf_counter() - start < 0.4


def test_batcher_waits_for_company_under_concurrent_load(started):
    gate = threading.Event()
    predict = _Recorder(gate=gate)
    batcher = started(predict, max_batch_size=64, max_delay_ms=200)
    futures = [_occupy(batcher), batcher.submit([_rows(0, 1)]), batcher.submit([_rows(0, 1)])]
    gate.set()
    for future in futures:
        future.result(5)
    # The second batch had company, so the third waits up to 200 ms and collects late arrivals.
    third = [batcher.submit([_rows(0, 1)])]
    time.sleep(0.05)
    third.append(batcher.submit([_rows(0, 1)]))
    for future in third:
        future.result(5)
    assert predict.sizes == [1, 2, 2]


def test_batcher_large_request_runs_in_chunks(started):
    predict = _Recorder()
    batcher = started(predict, max_batch_size=4)
    doubled, _ = batcher.submit([_rows(0, 10)]).result(5)
    np.testing.assert_array_equal(doubled, _rows(0, 10) * 2)
    assert predict.sizes == [4, 4, 2]


def test_batcher_keeps_different_shapes_apart(started):
    gate = threading.Event()
    predict = _Recorder(gate=gate)
    batcher = started(predict, max_batch_size=64, max_delay_ms=20)
    blocker = _occupy(batcher)
    narrow = [batcher.submit([_rows(0, 2, width=w)]) for w in (3, 5, 3, 5, 3, 5)]
    gate.set()
    blocker.result(5)
    for future, width in zip(narrow, (3, 5, 3, 5, 3, 5)):
        assert future.result(5)[0].shape == (2, width)
    assert predict.sizes == [1, 6, 6]


def test_batcher_failing_request_does_not_fail_the_others(started):
    gate = threading.Event()
    predict = _Recorder(gate=gate)
    batcher = started(predict, max_batch_size=64, max_delay_ms=20)
    good = [_occupy(batcher)] + [batcher.submit([_rows(i, 1)]) for i in range(3)]
    bad = batcher.submit([-_rows(1, 1)])
    gate.set()
    for future in good:
        assert future.result(5)[0].shape == (1, 3)
    with pytest.raises(ValueError, match="negative input"):
        bad.result(5)
    assert predict.sizes == [1, 4, 1, 1, 1, 1]  # the merged batch failed, then each ran alone
    assert batcher.stats()["failed_requests"] == 1


def test_batcher_rejects_when_the_queue_is_full(started):
    gate = threading.Event()
    batcher = started(_Recorder(gate=gate), max_batch_size=2, max_queue_rows=4, max_delay_ms=0)
    futures = [batcher.submit([_rows(0, 2)]) for _ in range(2)]
    time.sleep(0.05)  # the worker now holds the first request; 2 rows wait
    futures.append(batcher.submit([_rows(0, 2)]))
    with pytest.raises(Overloaded, match="retry later"):
        batcher.submit([_rows(0, 2)])
    gate.set()
    for future in futures:
        future.result(5)
    assert batcher.stats()["rejected_requests"] == 1


def test_batcher_close_refuses_new_requests():
    batcher = DynamicBatcher(_Recorder())
    batcher.start()
    batcher.close()
    with pytest.raises(Unavailable, match="closed"):
        batcher.submit([_rows(0, 1)])


def test_batcher_close_finishes_accepted_requests():
    gate = threading.Event()
    batcher = DynamicBatcher(_Recorder(gate=gate), max_batch_size=1, max_delay_ms=0)
    batcher.start()
    running = batcher.submit([_rows(0, 1)])
    time.sleep(0.05)
    waiting = batcher.submit([_rows(0, 1)])
    closer = threading.Thread(target=batcher.close)
    closer.start()
    time.sleep(0.05)
    gate.set()
    closer.join(5)
    assert running.result(5)[0].shape == (1, 3)
    assert waiting.result(5)[0].shape == (1, 3)
    assert not closer.is_alive() and not batcher._thread.is_alive()


@pytest.mark.parametrize("kwargs, match", [
    ({"max_batch_size": 0}, "max_batch_size"),
    ({"max_delay_ms": -1}, "max_delay_ms"),
])
def test_batcher_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicBatcher(_Recorder(), **kwargs)

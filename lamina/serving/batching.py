"""Dynamic batching: concurrent requests merged into one model call on a worker thread.

``DynamicBatcher.submit`` queues a request (a list of arrays, rows first) and returns a
``concurrent.futures.Future``. One worker thread takes the oldest request, gathers
others of the same trailing shapes until ``max_batch_size`` rows or ``max_delay_ms``,
runs them as one batch and hands each request its slice. Knows nothing about HTTP.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

__all__ = ["DynamicBatcher", "Unavailable", "Overloaded"]

_STOP = object()


class Unavailable(RuntimeError):
    """The batcher cannot take or finish a request: it is closed or shutting down."""


class Overloaded(Unavailable):
    """Raised by ``submit`` when the queue already holds ``max_queue_rows`` rows."""


class _Request:
    __slots__ = ("arrays", "rows", "key", "future")

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays
        self.rows = int(arrays[0].shape[0])
        # Only requests whose arrays agree past the batch axis can be concatenated.
        self.key = tuple((a.shape[1:], a.dtype.str) for a in arrays)
        self.future: Future = Future()


class DynamicBatcher:
    """Runs ``predict`` on batches gathered from concurrent requests, on one worker thread.

    Requests that queued while the worker was busy join the next batch at once; when the
    previous batch held several requests (there is concurrent load), the worker also waits
    up to ``max_delay_ms`` for more, while a lone client never waits. Under heavy load
    batches therefore grow, and so does throughput.
    A request larger than ``max_batch_size`` rows runs alone, in chunks of that size. If a
    merged batch fails, its requests are retried one by one, so one bad request cannot
    fail the others.

    Args:
        predict: function ``list[np.ndarray] -> list[np.ndarray]`` (rows first).
        max_batch_size: most rows per model call. Default 64.
        max_delay_ms: longest wait for more requests, under concurrent load. Default 2.0.
        max_queue_rows: rows allowed to wait; beyond it ``submit`` raises ``Overloaded``.
            Default ``100 * max_batch_size``.

    Example:
    >>> import numpy as np
    >>> batcher = DynamicBatcher(lambda arrays: [arrays[0] * 2], max_batch_size=8)
    >>> batcher.start()
    >>> future = batcher.submit([np.arange(3.0)[:, None]])
    >>> future.result()[0].ravel().tolist()
    [0.0, 2.0, 4.0]
    >>> batcher.close()
    >>> batcher.stats()["requests"], batcher.stats()["batches"]
    (1, 1)
    """

    def __init__(self, predict, max_batch_size: int = 64, max_delay_ms: float = 2.0,
                 max_queue_rows: int | None = None):
        if int(max_batch_size) < 1:
            raise ValueError(f"max_batch_size must be a positive int; received {max_batch_size!r}.")
        if float(max_delay_ms) < 0:
            raise ValueError(f"max_delay_ms must be >= 0; received {max_delay_ms!r}.")
        self.predict = predict
        self.max_batch_size = int(max_batch_size)
        self.max_delay = float(max_delay_ms) / 1000.0
        self.max_queue_rows = int(max_queue_rows) if max_queue_rows is not None else 100 * self.max_batch_size
        self._queue: queue.Queue = queue.Queue()
        self._deferred: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._queued_rows = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_batch_requests = 0
        self._stats = {"requests": 0, "rows": 0, "batches": 0, "batched_rows": 0, "largest_batch": 0,
                       "failed_requests": 0, "rejected_requests": 0}

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="lamina-batcher", daemon=True)
            self._thread.start()

    def submit(self, arrays: list[np.ndarray]) -> Future:
        """Queue one request; the future resolves to its outputs (a list of arrays).

        Raises ``Overloaded`` when too many rows are already waiting and ``Unavailable``
        once the batcher is closed.
        """
        request = _Request(arrays)
        with self._lock:
            if self._closed:
                raise Unavailable("The batcher is closed; the server is shutting down.")
            if self._queued_rows + request.rows > self.max_queue_rows and self._queued_rows:
                self._stats["rejected_requests"] += 1
                raise Overloaded(
                    f"{self._queued_rows} rows are already waiting (limit {self.max_queue_rows}); retry later."
                )
            self._queued_rows += request.rows
            self._stats["requests"] += 1
            self._stats["rows"] += request.rows
            # Under the lock, so every accepted request is queued before close()'s stop mark.
            self._queue.put(request)
        return request.future

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new requests, finish the ones already accepted, then stop the worker."""
        with self._lock:
            self._closed = True
            self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self) -> dict:
        """Counters: requests, rows, batches, mean and largest batch (rows), failures, queue."""
        with self._lock:
            stats = dict(self._stats)
            stats["queued_rows"] = self._queued_rows
        batches = stats.pop("batched_rows"), stats["batches"]
        stats["mean_batch_size"] = round(batches[0] / batches[1], 3) if batches[1] else 0.0
        return stats

    # ------------------------------------------------------------------ worker
    def _loop(self) -> None:
        stopping = False
        while True:
            if self._deferred:
                first = self._deferred.popleft()
            elif stopping:
                break
            else:
                first = self._queue.get()
            if first is _STOP:
                stopping = True
                continue
            batch, stop = self._gather(first)
            self._execute([r for r in batch if r.future.set_running_or_notify_cancel()], batch)
            stopping = stopping or stop
        self._fail_pending()

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, rows = [first], first.rows
        kept = collections.deque()
        for item in self._deferred:  # earlier arrivals of another shape go first when they fit
            if item.key == first.key and rows + item.rows <= self.max_batch_size:
                batch.append(item)
                rows += item.rows
            else:
                kept.append(item)
        self._deferred = kept
        deadline = time.monotonic() + (self.max_delay if self._last_batch_requests > 1 else 0.0)
        while rows < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            if item.key == first.key and rows + item.rows <= self.max_batch_size:
                batch.append(item)
                rows += item.rows
                continue
            self._deferred.append(item)
            if item.key == first.key:
                break  # the batch is as full as this request allows
        return batch, False

    def _execute(self, live: list[_Request], taken: list[_Request]) -> None:
        self._last_batch_requests = len(taken)
        with self._lock:
            self._queued_rows -= sum(r.rows for r in taken)
        if not live:
            return
        if not self._run(live):
            for request in live:  # isolate the request that made the merged batch fail
                self._run([request])

    def _run(self, batch: list[_Request]) -> bool:
        count = len(batch[0].arrays)
        arrays = [np.concatenate([r.arrays[i] for r in batch]) if len(batch) > 1 else batch[0].arrays[i]
                  for i in range(count)]
        total = int(arrays[0].shape[0])
        try:
            outputs = self._predict_chunked(arrays, total)
        except Exception as error:  # the model's own error, whatever its type, goes to the caller
            if len(batch) > 1:
                return False
            with self._lock:
                self._stats["failed_requests"] += 1
            batch[0].future.set_exception(error)
            return True
        with self._lock:
            self._stats["batches"] += 1
            self._stats["batched_rows"] += total
            self._stats["largest_batch"] = max(self._stats["largest_batch"], total)
        offset = 0
        for request in batch:
            request.future.set_result([o[offset:offset + request.rows] for o in outputs])
            offset += request.rows
        return True

    def _predict_chunked(self, arrays: list[np.ndarray], total: int) -> list[np.ndarray]:
        size = self.max_batch_size
        if total <= size:
            outputs = [np.asarray(o) for o in self.predict(arrays)]
        else:
            parts = [self.predict([a[start:start + size] for a in arrays]) for start in range(0, total, size)]
            outputs = [np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(len(parts[0]))]
        for output in outputs:
            if output.ndim == 0 or output.shape[0] != total:
                raise ValueError(
                    f"The model returned an output of shape {output.shape} for a batch of {total} rows; "
                    f"serving needs outputs with the batch axis first."
                )
        return outputs

    def _fail_pending(self) -> None:
        leftovers = list(self._deferred)
        self._deferred.clear()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                leftovers.append(item)
        for request in leftovers:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(Unavailable("The server shut down before this request ran."))

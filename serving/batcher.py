"""Dynamic batching (on by default in the server), as Triton's dynamic batcher: concurrent requests for one model
are gathered for up to ``max_delay_ms`` milliseconds (or until ``max_batch`` inputs wait) and run as one
``predict_batch`` call, so one onnxruntime run serves many requests.

Each worker thread takes the first waiting input and what is queued behind it, then keeps collecting until the
batch is full or the delay since that first input has passed, but waits only while another batch of the model
is running (under load, requests arrive while it computes). With the queue empty and the other workers idle, a
lone request (one client, light load) runs at once instead of paying the delay. A request of several inputs is
a batch already: the server runs it directly (``serving.http_common.run_predict``).

If the batch fails with an input error (one bad input spoils a padded batch), its inputs are run one by one so
that each caller gets its own result or its own error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from serving.errors import ServingError

log = logging.getLogger("serving.batcher")

_STOP = object()


class BatcherClosed(ServingError):
    """The batcher was closed (the model was reloaded or the server is stopping) before the input was taken."""


class DynamicBatcher:
    """Gathers single inputs into batches for one predictor.

    Args:
      predict_batch: the predictor's ``predict_batch`` (list of inputs → list of results).
      max_batch: most inputs per call.
      max_delay_ms: longest wait for more inputs after the first of a batch arrives.
      on_batch: called with the size of each batch run (for metrics).
      name: a name for the worker threads.
      workers: batches that may run at once (each worker gathers and runs its own; onnxruntime releases the GIL,
        so a second worker gathers the next batch while the first computes).
    """

    def __init__(self, predict_batch: Callable, max_batch: int = 32, max_delay_ms: float = 5.0,
                 on_batch: Callable[[int], None] | None = None, name: str = "model", workers: int = 1):
        if max_batch < 1 or max_delay_ms < 0 or workers < 1:
            raise ValueError(f"max_batch and workers must be ≥ 1 and max_delay_ms ≥ 0, got {max_batch}, "
                             f"{workers}, {max_delay_ms}")
        self.predict_batch = predict_batch
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1000.0
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._busy = 0  # workers running a batch now
        self._threads = [threading.Thread(target=self._run, name=f"batcher-{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, x) -> Future:
        """Queues one input; the future resolves to its result (or raises its error).

        Raises:
          BatcherClosed: the batcher no longer takes inputs.
        """
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosed("the model is being replaced or the server is stopping; retry")
            self._queue.put((x, future))
        return future

    def close(self, wait: bool = False) -> None:
        """Stops taking inputs; the workers finish those already queued, then end."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(_STOP)  # one per worker, after everything already queued
        if wait:
            for thread in self._threads:
                thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stopping = self._gather(first)
            with self._lock:
                self._busy += 1
            try:
                self._execute(batch)
            finally:
                with self._lock:
                    self._busy -= 1
        # drain: anything queued before the stop marker has been taken above

    def _gather(self, first) -> tuple[list, bool]:
        """The batch that starts with ``first``, and whether the stop marker was met."""
        batch = [first]
        deadline = time.monotonic() + self.max_delay
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 and self._busy else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _execute(self, batch: list) -> None:
        live = [(x, f) for x, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        if self.on_batch is not None:
            self.on_batch(len(live))
        try:
            results = self.predict_batch([x for x, _ in live])
        except ServingError as err:
            if len(live) == 1:
                live[0][1].set_exception(err)
                return
            for x, future in live:  # find which input is bad: each caller gets its own answer
                try:
                    future.set_result(self.predict_batch([x])[0])
                except BaseException as err:  # noqa: BLE001  (handed to the caller)
                    future.set_exception(err)
            return
        except BaseException as err:  # noqa: BLE001
            log.exception("batch of %d failed", len(live))
            for _, future in live:
                future.set_exception(err)
            return
        for (_, future), result in zip(live, results):
            future.set_result(result)

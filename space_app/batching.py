"""Dynamic batching: requests that arrive together are answered by one call over all of them.

The app's predictions are one padded forward pass plus vectorized probes, so twenty questions cost little
more than one. :class:`MicroBatcher` holds the first request for a short window, collects the requests
that arrive meanwhile (up to a maximum), runs the batch function once and hands each caller its answer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class MicroBatcher(Generic[Item, Answer]):
    """Run ``batch_fn(items) -> answers`` (same length, same order) over requests gathered within ``wait_s``.

    ``submit`` blocks until its answer is ready and re-raises the batch's exception for every caller in it.
    """

    def __init__(self, batch_fn: Callable[[list[Item]], list[Answer]], *, wait_s: float = 0.01, max_batch: int = 32):
        self.batch_fn = batch_fn
        self.wait_s = wait_s
        self.max_batch = max_batch
        self._requests: queue.Queue[tuple[Item, Future]] = queue.Queue()
        self.batch_sizes: list[int] = []
        """Sizes of the batches run so far (the benchmark reports them)."""
        threading.Thread(target=self._serve, daemon=True, name="micro-batcher").start()

    def submit(self, item: Item) -> Answer:
        future: Future = Future()
        self._requests.put((item, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            batch = [self._requests.get()]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._requests.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self.batch_sizes.append(len(batch))
            try:
                answers = self.batch_fn([item for item, _ in batch])
            except Exception as error:  # every caller of this batch gets the error; the batcher keeps serving
                for _, future in batch:
                    future.set_exception(error)
                continue
            for (_, future), answer in zip(batch, answers):
                future.set_result(answer)

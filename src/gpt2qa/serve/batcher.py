"""Micro-batching: concurrent questions share one `QAPipeline.predict` call.

Every question goes onto one asyncio queue. A single worker task takes the first waiting
item, then keeps collecting for up to `batch_wait_ms` (or until it holds `max_batch_size`
items) and runs them as one `QAPipeline.predict` call in a worker thread, so the event loop
keeps accepting requests meanwhile. Requests with different thresholds share the model call:
the batch is decoded once and each request re-applies its own null_score_diff_threshold to
`Prediction.score_diff` (`decode.decide`, in `schemas.answer_from_prediction`). With
`max_batch_size=1` every request gets its own model call (micro-batching off).

A job names the pipeline that answers it (the app's, or the one a test injected with
`app.dependency_overrides`); jobs of different pipelines never share a call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gpt2qa.decode import Prediction
from gpt2qa.pipeline import QAPipeline


@dataclass(frozen=True)
class _Job:
    example: Any
    """The task's example (`Task.example`)."""
    pipeline: QAPipeline
    future: asyncio.Future[Prediction]
    queued_at: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Collects concurrent questions into shared `pipeline.predict` calls (see module doc).

    `start()` and `stop()` must run on the event loop that calls `submit()`.
    """

    def __init__(self, pipeline: QAPipeline, max_batch_size: int, batch_wait_ms: float) -> None:
        self.pipeline = pipeline
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.forward_batches = 0
        self.questions_answered = 0
        self.forward_seconds = 0.0
        self._ids = itertools.count()
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("MicroBatcher already started")
        self._queue = asyncio.Queue()
        # One thread: forward passes run one at a time, never competing for the cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpt2qa-forward")
        self._task = asyncio.create_task(self._run(), name="gpt2qa-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(RuntimeError("server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    async def submit(self, question: str, context: Any,
                     pipeline: QAPipeline | None = None) -> Prediction:
        """Queue one question; resolve with its Prediction (decoded at the model's threshold).
        `pipeline` answers it (default: the batcher's own), with its task's example."""
        pipeline = pipeline or self.pipeline
        return await self.submit_example(pipeline.task.example("q", question, context), pipeline)

    async def submit_example(self, example: Any, pipeline: QAPipeline | None = None
                             ) -> Prediction:
        """`submit` for an example the caller already built (and so checked) with the task's
        `example`; it gets an id of its own here, unique within every batch."""
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("MicroBatcher is not running")
        pipeline = pipeline or self.pipeline
        example = dataclasses.replace(example, qas_id=f"r{next(self._ids)}")
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(example, pipeline, future))
        return await future

    async def _collect(self, jobs: list[_Job]) -> None:
        """Wait for one job, then gather more until the batch is full or the wait is over.

        The wait counts from when the first job was queued, not from when it was taken: a job
        that already waited out a busy model is not held back again (the model would idle)."""
        assert self._queue is not None
        jobs.append(await self._queue.get())
        deadline = jobs[0].queued_at + self.batch_wait_s
        while len(jobs) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._queue.empty():
                try:
                    jobs.append(self._queue.get_nowait())  # take what is already waiting
                    continue
                except asyncio.QueueEmpty:
                    break
            # Not wait_for: cancelling a Queue.get that has just won could drop its item.
            getter = asyncio.ensure_future(self._queue.get())
            try:
                done, _ = await asyncio.wait({getter}, timeout=remaining)
            except asyncio.CancelledError:
                getter.cancel()
                raise
            if getter not in done:
                getter.cancel()
                try:
                    jobs.append(await getter)  # it may have won the race after all
                except asyncio.CancelledError:
                    pass
                break
            jobs.append(getter.result())

    async def _run(self) -> None:
        while True:
            jobs: list[_Job] = []
            try:
                await self._collect(jobs)
                # A request whose client went away has a cancelled future: skip its work.
                live = [j for j in jobs if not j.future.done()]
                by_pipeline: dict[int, list[_Job]] = {}
                for job in live:
                    by_pipeline.setdefault(id(job.pipeline), []).append(job)
                for group in by_pipeline.values():
                    # Checked again before each model call: a client may leave meanwhile.
                    await self._process([j for j in group if not j.future.done()])
            except asyncio.CancelledError:
                for job in jobs:
                    _resolve(job.future, exc=RuntimeError("server is shutting down"))
                raise

    async def _process(self, jobs: Sequence[_Job]) -> None:
        jobs = [j for j in jobs if not j.future.done()]  # nobody waits for a cancelled one
        if not jobs:
            return
        loop = asyncio.get_running_loop()
        pipeline = jobs[0].pipeline
        examples = [j.example for j in jobs]
        start = time.perf_counter()
        try:
            preds = await loop.run_in_executor(self._executor, _predict, pipeline, examples)
        except Exception as exc:
            self.forward_seconds += time.perf_counter() - start
            if len(jobs) > 1:
                # Retry one by one so that one bad input fails only its own request.
                for job in jobs:
                    await self._process([job])
                return
            _resolve(jobs[0].future, exc=exc)
            return
        self.forward_seconds += time.perf_counter() - start
        self.forward_batches += 1
        self.questions_answered += len(jobs)
        for job in jobs:
            pred = preds.get(job.example.qas_id)
            if pred is None:
                _resolve(job.future, exc=RuntimeError(f"no prediction for {job.example.qas_id}"))
            else:
                _resolve(job.future, pred)


def _predict(pipeline: QAPipeline, examples: list[Any]) -> dict[str, Prediction]:
    # The forward batch size is the device's (pipeline default), not the number of requests.
    preds = pipeline.predict(examples, null_score_diff_threshold=None)
    return {p.qas_id: p for p in preds}


def _resolve(future: asyncio.Future[Prediction], pred: Prediction | None = None,
             exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(pred)  # type: ignore[arg-type]

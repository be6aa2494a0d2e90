"""Micro-batching: concurrent questions share one `QAPipeline.predict` call.

The event loop only queues questions; one model thread does everything else. It takes the
first waiting question, then keeps collecting for up to `batch_wait_ms` (or until it holds
`max_batch_size` questions), runs them as one `QAPipeline.predict` call (tokenising, forward
and decoding), hands the predictions back to the event loop and at once takes the next batch.
So the model never waits for the event loop between batches, and the event loop keeps
accepting and answering requests meanwhile. Requests with different thresholds share the
model call: the batch is decoded once and each request re-applies its own
null_score_diff_threshold to `Prediction.score_diff` (`decode.decide`, in
`schemas.answer_from_prediction`). With `max_batch_size=1` every request gets its own model
call (micro-batching off).

A job names the pipeline that answers it (the app's, or the one a test injected with
`app.dependency_overrides`); jobs of different pipelines never share a call.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from gpt2qa.data import SquadExample
from gpt2qa.decode import Prediction
from gpt2qa.pipeline import QAPipeline

_Outcome = tuple["asyncio.Future[Prediction]", Prediction | None, BaseException | None]


@dataclass(frozen=True)
class _Job:
    example: SquadExample
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
        # None is the stop signal. A thread-safe queue: the event loop puts, the model takes.
        self._queue: queue.SimpleQueue[_Job | None] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("MicroBatcher already started")
        self._loop = asyncio.get_running_loop()
        self._queue = queue.SimpleQueue()
        # One thread: forward passes run one at a time, never competing for the cores.
        self._thread = threading.Thread(target=self._work, args=(self._queue,),
                                        name="gpt2qa-forward", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Let the batch in the model finish; fail every question still waiting."""
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._queue is not None:
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    _resolve(job.future, exc=RuntimeError("server is shutting down"))
        await asyncio.sleep(0)  # run the model thread's last hand-backs

    async def submit(self, question: str, context: str,
                     pipeline: QAPipeline | None = None) -> Prediction:
        """Queue one question; resolve with its Prediction (decoded at the model's threshold).
        `pipeline` answers it (default: the batcher's own)."""
        if self._queue is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("MicroBatcher is not running")
        example = SquadExample(qas_id=f"r{next(self._ids)}", question=question, context=context,
                               answers=(), is_impossible=False)
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._queue.put(_Job(example, pipeline or self.pipeline, future))
        return await future

    # -- the model thread -------------------------------------------------------------------

    def _work(self, jobs_queue: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            jobs, stopping = self._collect(jobs_queue)
            if stopping:
                self._deliver([(j.future, None, RuntimeError("server is shutting down"))
                               for j in jobs])
                return
            # A request whose client went away has a cancelled future: skip its work. (Read
            # from this thread, `done()` may be a moment stale: at worst one wasted answer.)
            by_pipeline: dict[int, list[_Job]] = {}
            for job in jobs:
                if not job.future.done():
                    by_pipeline.setdefault(id(job.pipeline), []).append(job)
            for group in by_pipeline.values():
                self._process(group)

    def _collect(self, jobs_queue: queue.SimpleQueue[_Job | None]) -> tuple[list[_Job], bool]:
        """Wait for one job, then gather more until the batch is full or the wait is over;
        return (jobs, whether stop() was called).

        The wait counts from when the first job was queued, not from when it was taken: a job
        that already waited out a busy model is not held back again (the model would idle)."""
        first = jobs_queue.get()
        if first is None:
            return [], True
        jobs = [first]
        deadline = first.queued_at + self.batch_wait_s
        while len(jobs) < self.max_batch_size:
            try:
                job = jobs_queue.get_nowait()  # take what is already waiting
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = jobs_queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _process(self, jobs: Sequence[_Job]) -> None:
        pipeline = jobs[0].pipeline
        start = time.perf_counter()
        try:
            preds = _predict(pipeline, [j.example for j in jobs])
        except Exception as exc:
            self.forward_seconds += time.perf_counter() - start
            if len(jobs) > 1:
                # Retry one by one so that one bad input fails only its own request.
                for job in jobs:
                    self._process([job])
                return
            self._deliver([(jobs[0].future, None, exc)])
            return
        # Counted before the answers go out, so /healthz after a response includes it.
        self.forward_seconds += time.perf_counter() - start
        self.forward_batches += 1
        self.questions_answered += len(jobs)
        outcomes: list[_Outcome] = []
        for job in jobs:
            pred = preds.get(job.example.qas_id)
            missing = RuntimeError(f"no prediction for {job.example.qas_id}")
            outcomes.append((job.future, pred, None if pred is not None else missing))
        self._deliver(outcomes)

    def _deliver(self, outcomes: list[_Outcome]) -> None:
        """Resolve futures on their event loop (asyncio futures are not thread-safe)."""
        if outcomes and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(_resolve_all, outcomes)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _predict(pipeline: QAPipeline, examples: list[SquadExample]) -> dict[str, Prediction]:
    # The forward batch size is the device's (pipeline default), not the number of requests.
    preds = pipeline.predict(examples, null_score_diff_threshold=None)
    return {p.qas_id: p for p in preds}


def _resolve_all(outcomes: list[_Outcome]) -> None:
    for future, pred, exc in outcomes:
        _resolve(future, pred, exc)


def _resolve(future: asyncio.Future[Prediction], pred: Prediction | None = None,
             exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(pred)  # type: ignore[arg-type]

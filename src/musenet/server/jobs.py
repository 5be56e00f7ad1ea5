"""Composing off the event loop: a bounded pool of worker threads and a bounded queue of jobs.

`JobQueue.submit` refuses work (QueueFull, with a Retry-After estimate) once `workers` jobs
run and `queue_size` more wait, so a burst of requests is answered at once instead of piling
up. A job reports its stage and progress through `Job.report`, which is also where a cancel
takes effect: it raises `Cancelled` inside the worker at the next step.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import MuseNetError
from .store import NotFound, new_id

log = logging.getLogger("musenet.server")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)


class Cancelled(Exception):
    """Raised inside a worker when its job was cancelled."""


class QueueFull(MuseNetError):
    """Every worker is busy and the queue is full."""

    def __init__(self, retry_after: int):
        super().__init__(f"the composer is busy; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Job:
    """One compose request: where it stands, and its result or error when finished."""

    id: str
    status: str = QUEUED
    stage: str = "waiting for a free worker"
    progress: float = 0.0
    result: Any = None
    error: str | None = None
    error_status: int = 500        # the HTTP status that fits the error
    created: float = field(default_factory=time.monotonic)
    finished: float | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    future: Future | None = None

    def report(self, stage: str, progress: float) -> None:
        """Called by the worker as it goes; raises Cancelled once a cancel was asked for."""
        if self.cancel_requested.is_set():
            raise Cancelled
        self.stage, self.progress = stage, min(max(float(progress), 0.0), 1.0)


class JobQueue:
    """A fixed pool of worker threads behind a queue of at most `queue_size` waiting jobs."""

    def __init__(self, workers: int = 1, queue_size: int = 8):
        if workers < 1 or queue_size < 0:
            raise MuseNetError("need at least one worker and a queue size of at least 0")
        self.workers, self.queue_size = workers, queue_size
        self.jobs: dict[str, Job] = {}
        self._order: list[str] = []   # queued job ids, oldest first
        self._lock = threading.Lock()
        self._durations: list[float] = []
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="musenet-compose")

    def active(self) -> int:
        with self._lock:
            return sum(job.status in ACTIVE for job in self.jobs.values())

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue ahead times the mean job time."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 10.0
        waiting = max(self.active() - self.workers + 1, 1)
        return int(min(max(math.ceil(mean * waiting / self.workers), 1), 600))

    def check_room(self) -> None:
        """QueueFull now if a job submitted now would be refused (to answer before preparing it)."""
        if self.active() >= self.workers + self.queue_size:
            raise QueueFull(self.retry_after())

    def submit(self, work: Callable[[Job], Any]) -> Job:
        """Queue `work(job)`; QueueFull when `workers + queue_size` jobs are already active."""
        with self._lock:
            busy = sum(job.status in ACTIVE for job in self.jobs.values())
            if busy >= self.workers + self.queue_size:
                full = True
            else:
                full = False
                job = Job(new_id())
                self.jobs[job.id] = job
                self._order.append(job.id)
        if full:
            raise QueueFull(self.retry_after())
        job.future = self._pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        with self._lock:
            if job.id in self._order:
                self._order.remove(job.id)
            if job.cancel_requested.is_set() or job.status != QUEUED:
                job.status, job.finished = CANCELLED, time.monotonic()
                return
            job.status, job.stage = RUNNING, "starting"
        started = time.monotonic()
        try:
            job.result = work(job)
            job.status, job.progress, job.stage = DONE, 1.0, "done"
        except Cancelled:
            job.status, job.stage = CANCELLED, "cancelled"
        except MuseNetError as err:
            job.status, job.error, job.error_status = FAILED, str(err), 422
        except Exception as err:  # noqa: BLE001 - a bug in one job must not kill the worker
            log.exception("compose job %s failed", job.id)
            job.status, job.error = FAILED, f"internal error: {type(err).__name__}: {err}".splitlines()[0]
        finally:
            job.finished = time.monotonic()
            with self._lock:
                self._durations = (self._durations + [job.finished - started])[-20:]

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id} (it may have expired)")
        return job

    def position(self, job: Job) -> int:
        """How many queued jobs are ahead of this one (0 when it runs or ran)."""
        with self._lock:
            return self._order.index(job.id) if job.id in self._order else 0

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop: a queued one is dropped now, a running one at its next step."""
        job = self.get(job_id)
        job.cancel_requested.set()
        with self._lock:
            if job.status == QUEUED:
                job.status, job.stage, job.finished = CANCELLED, "cancelled", time.monotonic()
                if job.id in self._order:
                    self._order.remove(job.id)
        return job

    def cleanup(self, ttl: float, now: float | None = None) -> int:
        """Forget finished jobs older than `ttl` seconds; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [j.id for j in self.jobs.values() if j.finished is not None and now - j.finished > ttl]
            for job_id in old:
                del self.jobs[job_id]
        return len(old)

    def shutdown(self) -> None:
        """Cancel everything and let the workers go (without waiting for a running job)."""
        with self._lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            job.cancel_requested.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

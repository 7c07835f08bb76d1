"""Partitions committed in threads, in order, with a bounded queue: each engine's last step.

A commit's cost is its S3 requests (a listing, the manifest's compare-and-swap, a marker), not its
bytes, so an interval of many partitions commits several at once. Each commit is a partition of its
own (its own manifest), so their order across threads does not matter to a reader; the results
come back in submission order. A commit that failed stops the queue: no commit is started after
its failure is seen, and its error is raised by the next submission (with one thread, the next
period is never committed after a failed one, as in a plain loop). An error in the block waits for
the running commits (each leaves its partition whole or untouched), cancels any not started and
logs the commits' own errors beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

COMMIT_THREADS = 8  # partitions committed at once (S3 requests, not bytes, are their cost)


class CommitQueue(Generic[T]):
    """``submit`` hands a commit to one of ``threads`` threads once one is free: the caller prepares
    the next period while they run, and no further (what the commits hold stays bounded)."""

    def __init__(self, threads: int = COMMIT_THREADS) -> None:
        self.threads = max(1, threads)
        self._futures: list[Future[T]] = []
        self._running: set[Future[T]] = set()
        self._error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> CommitQueue[T]:
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="commit")
        return self

    def submit(self, fn: Callable[..., T], *args: Any) -> None:
        """Run ``fn(*args)`` once a thread is free; raises the first commit error seen instead."""
        assert self._pool is not None, "use CommitQueue in a with block"
        self._settle(self.threads - 1)
        if self._error is not None:
            raise self._error
        future = self._pool.submit(fn, *args)
        self._futures.append(future)
        self._running.add(future)

    def results(self) -> list[T]:
        """Every commit's result in submission order, once all have finished; the first error raised."""
        return [f.result() for f in self._futures]

    def _settle(self, most: int) -> None:
        """Wait until at most ``most`` commits are unfinished, noting the first error of those that ended."""
        while True:
            for f in [f for f in self._running if f.done()]:
                self._running.discard(f)
                if self._error is None and not f.cancelled() and f.exception() is not None:
                    self._error = f.exception()
            if len(self._running) <= most:
                return
            wait(self._running, return_when=FIRST_COMPLETED)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._pool is not None
        if exc_type is not None:
            for f in self._futures:  # the commits not started yet are not made
                f.cancel()
        self._pool.shutdown(wait=True)
        failed = [f.exception() for f in self._futures if not f.cancelled() and f.exception() is not None]
        if exc_type is not None:
            for error in failed:  # the block's error propagates; a commit's own error would be lost
                log.error("a partition's commit failed too: %s: %s", type(error).__name__, error)
        elif failed:
            raise failed[0]

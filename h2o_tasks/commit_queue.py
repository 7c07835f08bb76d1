"""Partitions committed in threads, in order, with a bounded queue: each engine's last step.

A commit's cost is its S3 requests (a listing, the manifest's compare-and-swap, a marker), not its
bytes, so an interval of many partitions commits several at once. Each commit is a partition of its
own (its own manifest), so their order across threads does not matter to a reader; the results
come back in submission order. A commit's error is raised at the next submission or at the end; an
error in the block waits for the running commits (each leaves its partition whole or untouched) and
cancels any not started.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")

COMMIT_THREADS = 8  # partitions committed at once (S3 requests, not bytes, are their cost)


class CommitQueue(Generic[T]):
    """``submit`` commits to ``threads`` threads and returns once at most ``threads`` are unfinished: the
    caller prepares the next period while they run, and no further (what the commits hold stays bounded)."""

    def __init__(self, threads: int = COMMIT_THREADS) -> None:
        self.threads = max(1, threads)
        self._futures: list[Future[T]] = []
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> CommitQueue[T]:
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="commit")
        return self

    def submit(self, fn: Callable[..., T], *args: Any) -> None:
        """Queue ``fn(*args)``; blocks while the queue is full; raises the first commit error seen."""
        assert self._pool is not None, "use CommitQueue in a with block"
        self._futures.append(self._pool.submit(fn, *args))
        while sum(not f.done() for f in self._futures) > self.threads:
            wait([f for f in self._futures if not f.done()], return_when=FIRST_COMPLETED)
        self._raise_first()

    def results(self) -> list[T]:
        """Every commit's result in submission order, once all have finished; the first error raised."""
        return [f.result() for f in self._futures]

    def _raise_first(self) -> None:
        for f in self._futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._pool is not None
        if exc_type is not None:
            for f in self._futures:  # the commits not started yet are not made
                f.cancel()
        self._pool.shutdown(wait=True)

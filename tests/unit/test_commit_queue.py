"""The engines' commit queue: submission order kept, a bounded queue, the first error stops it."""

from __future__ import annotations

import threading
import time

import pytest

from h2o_tasks.commit_queue import CommitQueue


def test_results_come_back_in_submission_order_whatever_finishes_first() -> None:
    def commit(i: int) -> int:
        time.sleep(0.05 * (5 - i))  # the first submitted finishes last
        return i

    with CommitQueue[int](4) as queue:
        for i in range(5):
            queue.submit(commit, i)
    assert queue.results() == [0, 1, 2, 3, 4]


def test_submit_blocks_while_as_many_commits_wait_as_there_are_threads() -> None:
    release = threading.Event()
    submitted: list[int] = []

    def producer(queue: CommitQueue[int]) -> None:
        for i in range(4):
            queue.submit(lambda i=i: release.wait(10) and i)
            submitted.append(i)

    with CommitQueue[int](1) as queue:
        t = threading.Thread(target=producer, args=(queue,))
        t.start()
        time.sleep(0.5)
        # one running and one waiting behind it: the third submission is held until one finishes
        assert submitted == [0], submitted
        release.set()
        t.join(10)
        assert submitted == [0, 1, 2, 3]
    assert queue.results() == [0, 1, 2, 3]


@pytest.mark.parametrize("threads", [1, 3])
def test_no_commit_starts_after_a_failure_is_seen_and_the_next_submission_raises_it(threads: int) -> None:
    returned: list[int] = []
    started: list[int] = []

    def commit(i: int) -> int:
        started.append(i)
        if i == 0:
            time.sleep(0.1)  # fails after its submission returned
            raise RuntimeError("manifest refused")
        return i

    with pytest.raises(RuntimeError, match="manifest refused"), CommitQueue[int](threads) as queue:
        for i in range(6):
            time.sleep(0.3)  # the first commit has failed by the second submission
            queue.submit(commit, i)
            returned.append(i)
    assert returned == [0]
    assert started == [0]  # the period after the failed one was never committed


def test_a_commit_error_is_raised_at_the_end_of_the_block_too() -> None:
    def commit(i: int) -> int:
        if i == 2:
            raise RuntimeError("listing refused")
        return i

    with pytest.raises(RuntimeError, match="listing refused"), CommitQueue[int](4) as queue:
        for i in range(3):
            queue.submit(commit, i)  # the last commit fails after its submission


def test_a_commit_error_beside_the_blocks_own_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def commit(i: int) -> int:
        raise RuntimeError("manifest refused")

    with pytest.raises(ValueError, match="bad period"), CommitQueue[int](2) as queue:
        queue.submit(commit, 0)
        time.sleep(0.2)
        raise ValueError("bad period")
    assert "a partition's commit failed too: RuntimeError: manifest refused" in caplog.text


def test_an_error_while_preparing_waits_for_the_running_commit_and_is_raised() -> None:
    release = threading.Event()
    ran: list[int] = []

    def commit(i: int) -> int:
        release.wait(10)
        ran.append(i)
        return i

    threading.Timer(0.3, release.set).start()  # the running commit ends after the error
    with pytest.raises(ValueError, match="bad period"), CommitQueue[int](1) as queue:
        queue.submit(commit, 0)
        raise ValueError("bad period")
    assert ran == [0]  # the running commit finished before the error left the block: its partition is whole

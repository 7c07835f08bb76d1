"""Run a long cluster job while watching the cluster: a lost node fails the job at once.

H2O does not recover a cloud that lost a node; a job on it can hang or fail obscurely. The
job runs in a thread; the caller polls the backend's status and raises with the reason. Only
positive evidence fails at once (a pod failed, a node exited, the cloud shrank); a cluster
that merely cannot be observed (an API server restarting, a leader in a long GC pause) fails
the job only after ``grace_s`` seconds of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from h2o_tasks.cluster.base import ClusterStatus
from h2o_tasks.errors import ClusterError

T = TypeVar("T")
log = logging.getLogger(__name__)


def run_watched(what: str, job: Callable[[], T], status: Callable[[], ClusterStatus], poll_s: float = 2.0,
                grace_s: float = 60.0, rebuild: bool = False) -> T:
    """Return ``job()``; raise ``ClusterError`` when the cluster fails, or stays unready for ``grace_s`` seconds.

    :param rebuild: the task's retry rebuilds a lost cluster (``cluster.rebuild_on_loss``): the
        error is retryable and says so.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = job()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"h2o-{what}", daemon=True)
    thread.start()
    unready_since: float | None = None
    while True:
        thread.join(poll_s)
        if not thread.is_alive():
            break
        st = _observe(status)
        if st.ready:
            if unready_since is not None:
                log.info("The H2O cloud %s is ready again after %.0fs", st.name, time.monotonic() - unready_since)
            unready_since = None
            continue
        if st.failed:
            raise _lost(what, st, rebuild=rebuild)
        if unready_since is None:
            log.warning("Cannot see the H2O cloud %s as ready during %s (%s: %s): waiting up to %.0fs before "
                        "giving up on it", st.name, what, st.reason, st.message, grace_s)
        unready_since = unready_since if unready_since is not None else time.monotonic()
        if time.monotonic() - unready_since >= grace_s:
            raise _lost(what, st, f" for {grace_s:.0f}s (cluster.unobservable_grace_s)", rebuild=rebuild)
    if "error" in result:
        st = _settled(status, grace_s, poll_s)
        if not st.ready:  # the job failed because the cloud broke: say so, keep H2O's error as the cause
            raise _lost(what, st, rebuild=rebuild) from result["error"]
        raise result["error"]
    return result["value"]


def _lost(what: str, st: ClusterStatus, how_long: str = "", *, rebuild: bool = False) -> ClusterError:
    then = ("the task's retry deletes it, creates it again under the same name and redoes what lived in it "
            "(cluster.rebuild_on_loss)" if rebuild else
            "clear the whole DAG run to start on a new cluster (or set cluster.rebuild_on_loss: true)")
    lost = "was taken by the janitor" if st.reason == "Reaped" else "lost a node"
    return ClusterError(f"the H2O cloud {st.name} {lost} during {what} ({st.reason}{how_long}): {st.message}. "
                        f"An H2O cloud does not heal: {then}", reason=st.reason or "CloudLost", retryable=rebuild)


def _observe(status: Callable[[], ClusterStatus]) -> ClusterStatus:
    """One observation; an error while observing (API server hiccup) counts as "not ready", not as a loss."""
    try:
        return status()
    except Exception as exc:  # any observation error is reported, never raised here
        return ClusterStatus("?", exists=True, reason="StatusUnknown", message=f"cannot observe the cluster: {exc}")


def _settled(status: Callable[[], ClusterStatus], grace_s: float, poll_s: float) -> ClusterStatus:
    """An observation that says ready or failed, asked again for up to ``grace_s`` while the cluster
    cannot be observed: a job that failed while the API server was away (or refusing, as a restarted
    one does until its caches fill) is not blamed on a cloud that is whole."""
    deadline = time.monotonic() + grace_s
    while True:
        st = _observe(status)
        if st.ready or st.failed or time.monotonic() >= deadline:
            return st
        time.sleep(poll_s)

"""Run a long cluster job while watching the cluster: a lost node fails the job at once.

H2O does not recover a cloud that lost a node; a job on it can hang or fail obscurely. The
job runs in a thread; the caller polls the backend's status and raises with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from h2o_tasks.cluster.base import ClusterStatus
from h2o_tasks.errors import ClusterError

T = TypeVar("T")


def run_watched(what: str, job: Callable[[], T], status: Callable[[], ClusterStatus], poll_s: float = 2.0,
                grace_polls: int = 10) -> T:
    """Return ``job()``; raise ``ClusterError`` when the cluster fails, or stays unready for ``grace_polls`` polls."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = job()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"h2o-{what}", daemon=True)
    thread.start()
    unready = 0
    while True:
        thread.join(poll_s)
        if not thread.is_alive():
            break
        st = _observe(status)
        if st.ready:
            unready = 0
            continue
        unready += 1
        if st.failed or unready >= grace_polls:
            raise _lost(what, st)
    if "error" in result:
        st = _observe(status)
        if not st.ready:  # the job failed because the cloud broke: say so, keep H2O's error as the cause
            raise _lost(what, st) from result["error"]
        raise result["error"]
    return result["value"]


def _lost(what: str, st: ClusterStatus) -> ClusterError:
    return ClusterError(f"the H2O cloud {st.name} lost a node during {what} ({st.reason}): {st.message}. "
                        "An H2O cloud does not heal: clear the whole DAG run to start on a new cluster",
                        reason=st.reason or "CloudLost")


def _observe(status: Callable[[], ClusterStatus]) -> ClusterStatus:
    """One observation; an error while observing (API server hiccup) counts as "not ready", not as a loss."""
    try:
        return status()
    except Exception as exc:  # any observation error is reported, never raised here
        return ClusterStatus("?", exists=True, reason="StatusUnknown", message=f"cannot observe the cluster: {exc}")

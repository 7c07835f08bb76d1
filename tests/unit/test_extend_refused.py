"""A task whose extend a janitor refuses (the cluster is being deleted) stops before its step; other
extend errors are left to the watch. The backend is a stand-in: only its ``extend`` answer matters here."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from h2o_airflow.operators.base import H2OPipelineOperator
from h2o_airflow.operators.cluster import H2OCreateClusterOperator
from h2o_tasks.cluster import ClusterInfo
from h2o_tasks.config import ClusterConfig
from h2o_tasks.errors import ClusterError

INFO = ClusterInfo("h2o-x", "kubernetes", expires_at="2026-01-01T00:00:00+00:00")


class Backend:
    login_patience_s = 0.0

    def __init__(self, error: Exception | None):
        self.error, self.closed = error, False

    def extend(self, info, by):
        if self.error:
            raise self.error
        return "2030-01-01T00:00:00+00:00"

    def status(self, *a, **k):
        return SimpleNamespace(exists=True, failed=False, ready=True)

    def close(self):
        self.closed = True


def _watched(error: Exception | None) -> list[str]:
    op = H2OPipelineOperator(task_id="train", pipeline="p.yaml")
    op._cluster = INFO
    op.__dict__["cluster_backend"] = Backend(error)
    ran: list[str] = []
    cfg = SimpleNamespace(cluster=ClusterConfig())
    op.watched({"ti": SimpleNamespace(xcom_push=lambda **k: None)}, cfg, "training", lambda: ran.append("step"))
    return ran


@pytest.mark.parametrize("reason", ["Reaped", "Busy"])
def test_a_refused_extend_fails_the_task_before_its_step(reason):
    with pytest.raises(ClusterError) as err:
        _watched(ClusterError("being deleted by the janitor", retryable=True, reason=reason))
    assert err.value.reason == reason and err.value.retryable


def test_other_extend_errors_leave_the_cluster_to_the_watch():
    assert _watched(ClusterError("no StatefulSet", reason="NotFound")) == ["step"]
    assert _watched(ConnectionRefusedError("API server restarting")) == ["step"]


def test_the_create_tasks_extend_fails_only_when_refused():
    """Run after the create (a retry re-attaches to an older cluster) and after the wait."""
    op = H2OCreateClusterOperator(task_id="create_cluster", pipeline="p.yaml")
    cfg = SimpleNamespace(cluster=ClusterConfig())
    assert op._extend(Backend(None), INFO, cfg).expires_at == "2030-01-01T00:00:00+00:00"
    assert op._extend(Backend(OSError("refused")), INFO, cfg) == INFO
    with pytest.raises(ClusterError):
        op._extend(Backend(ClusterError("marked", retryable=True, reason="Reaped")), INFO, cfg)

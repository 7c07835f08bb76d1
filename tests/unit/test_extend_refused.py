"""A task whose extend a janitor refuses (the cluster is being deleted) stops before its step; other
extend errors are left to the watch. The backend is a stand-in: only its ``extend`` answer matters here."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from h2o_airflow.links import XCOM_ERROR_KEY
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


def _watched(error: Exception | None, ran: list[str] | None = None, pushed: dict | None = None) -> list[str]:
    op = H2OPipelineOperator(task_id="train", pipeline="p.yaml")
    op._cluster = INFO
    op.__dict__["cluster_backend"] = Backend(error)
    ran = [] if ran is None else ran
    cfg = SimpleNamespace(cluster=ClusterConfig())
    push = (lambda key, value: pushed.__setitem__(key, value)) if pushed is not None else (lambda **k: None)
    op.watched({"ti": SimpleNamespace(xcom_push=push)}, cfg, "training", lambda: ran.append("step"))
    return ran


@pytest.mark.parametrize("reason", ["Reaped", "Busy"])
def test_a_refused_extend_fails_the_task_before_its_step(reason):
    ran, pushed = [], {}
    with pytest.raises(ClusterError) as err:
        _watched(ClusterError("being deleted by the janitor", retryable=True, reason=reason), ran, pushed)
    assert err.value.reason == reason and err.value.retryable
    assert ran == []  # the step never started
    assert "being deleted by the janitor" in pushed[XCOM_ERROR_KEY]  # the run's diagnostics name the cause


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
    with pytest.raises(ClusterError) as gone:  # deleted under the task: only its retry can make it again
        op._extend(Backend(ClusterError("no StatefulSet", reason="NotFound")), INFO, cfg)
    assert gone.value.retryable


class Janitored(Backend):
    """A backend whose cluster a janitor takes between the create's re-attach and its extend, ``times`` times."""

    def __init__(self, reason: str, times: int):
        super().__init__(None)
        self.reason, self.times, self.creates, self.calls = reason, times, 0, []

    def create(self, spec):
        self.creates += 1
        self.calls.append("create")
        return INFO

    def delete(self, info):
        self.calls.append(f"delete {info.name}")

    def extend(self, info, by):
        if self.creates <= self.times:
            raise ClusterError("taken by the janitor", retryable=self.reason == "Reaped", reason=self.reason)
        return "2030-01-01T00:00:00+00:00"


@pytest.mark.parametrize("reason", ["Reaped", "NotFound"])
def test_a_cluster_the_janitor_takes_as_a_retry_re_attaches_is_made_again(reason):
    op = H2OCreateClusterOperator(task_id="create_cluster", pipeline="p.yaml")
    cfg = SimpleNamespace(cluster=ClusterConfig())
    backend = Janitored(reason, times=1)
    info = op._create_extended(backend, SimpleNamespace(name=INFO.name), cfg)
    assert (backend.creates, info.expires_at, op._cluster) == (2, "2030-01-01T00:00:00+00:00", info)
    # what the janitor left (a terminating anchor or Secret) is gone before the objects are made again
    assert backend.calls == ["create", f"delete {INFO.name}", "create"]
    twice = Janitored(reason, times=2)  # taken again: the task fails, and its retry tries once more
    with pytest.raises(ClusterError) as err:
        op._create_extended(twice, SimpleNamespace(name=INFO.name), cfg)
    assert (twice.creates, err.value.retryable) == (2, True)
    busy = Janitored("Busy", times=1)  # held by a janitor's delete: not made again under it
    with pytest.raises(ClusterError):
        op._create_extended(busy, SimpleNamespace(name=INFO.name), cfg)
    assert busy.creates == 1

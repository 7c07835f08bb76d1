"""A long job on a cluster that loses a node fails at once with the reason."""

import time

import pytest

from h2o_tasks.cluster.base import ClusterStatus
from h2o_tasks.cluster.watch import run_watched
from h2o_tasks.errors import ClusterError

OK = ClusterStatus("c", exists=True, ready=True)
LOST = ClusterStatus("c", exists=True, failed=True, reason="NodeExited", message="H2O node 1 exited")
UNHEALTHY = ClusterStatus("c", exists=True, reason="Unhealthy", message="1 bad node")


def test_result_and_errors_of_the_job_pass_through():
    assert run_watched("x", lambda: 42, lambda: OK, poll_s=0.01) == 42
    with pytest.raises(ZeroDivisionError):
        run_watched("x", lambda: 1 / 0, lambda: OK, poll_s=0.01)


@pytest.mark.parametrize("status", [LOST, UNHEALTHY])
def test_a_lost_node_fails_the_job_fast(status):
    t0 = time.monotonic()
    with pytest.raises(ClusterError) as err:
        run_watched("training", lambda: time.sleep(30), lambda: status, poll_s=0.05, grace_polls=3)
    assert time.monotonic() - t0 < 5
    assert "lost a node during training" in str(err.value) and status.reason in str(err.value)


def test_a_job_error_on_a_broken_cloud_is_reported_as_the_lost_node():
    def job():
        raise RuntimeError("H2O: java.lang.IllegalStateException: node /10.0.0.2:54321 is gone")

    with pytest.raises(ClusterError) as err:
        run_watched("training", job, lambda: LOST, poll_s=0.01)
    assert "lost a node during training (NodeExited)" in str(err.value)
    assert isinstance(err.value.__cause__, RuntimeError)


def test_an_observation_error_counts_as_unready_not_as_a_crash():
    calls = []

    def flaky():
        calls.append(1)
        raise ConnectionError("apiserver restarting")

    t0 = time.monotonic()
    with pytest.raises(ClusterError) as err:
        run_watched("training", lambda: time.sleep(30), flaky, poll_s=0.02, grace_polls=3)
    assert len(calls) == 3 and time.monotonic() - t0 < 5
    assert "StatusUnknown" in str(err.value) and "apiserver restarting" in str(err.value)

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

"""Pure decisions: cluster names, readiness on recorded /3/Cloud states, sizing."""

import re

import pytest

from h2o_tasks import naming, sizing
from h2o_tasks.cluster.readiness import CloudState, decide, poll_until_ready
from h2o_tasks.config import ClusterConfig
from h2o_tasks.errors import ClusterError, ConfigError

DNS1123 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def test_cluster_name_is_stable_unique_and_dns_safe():
    a = naming.cluster_name("arrival-delay", "h2o_train__arrival-delay", "scheduled__2013-02-01T00:00:00+00:00")
    assert a == naming.cluster_name("arrival-delay", "h2o_train__arrival-delay", "scheduled__2013-02-01T00:00:00+00:00")
    b = naming.cluster_name("arrival-delay", "h2o_train__arrival-delay", "scheduled__2013-02-02T00:00:00+00:00")
    assert a != b
    long = naming.cluster_name("x" * 80, "d" * 300, "r")
    for name in (a, b, long):
        assert DNS1123.match(name) and len(name) <= 63 - 11  # room for StatefulSet pod and revision suffixes


def test_labels_are_valid_label_values():
    labels = naming.labels("h2o-x-1", "p", "dag id with spaces" * 10, "manual__2013-01-01T00:00:00+00:00")
    for value in labels.values():
        assert len(value) <= 63 and re.match(r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$", value)


def cloud(size, consensus=True, healthy=True, bad=0):
    return CloudState.from_json({"cloud_size": size, "consensus": consensus, "cloud_healthy": healthy,
                                 "bad_nodes": bad, "cloud_name": "c"})


@pytest.mark.parametrize(
    ("state", "expected", "kw", "ready", "failed", "reason"),
    [
        (None, 3, {}, False, False, "NotAnswering"),
        (cloud(1, consensus=False), 3, {"elapsed_s": 3}, False, False, "Forming"),
        (cloud(3, consensus=False), 3, {}, False, False, "NoConsensus"),
        (cloud(3), 3, {}, True, False, "Ready"),
        (cloud(3, healthy=False, bad=1), 3, {}, False, False, "Unhealthy"),
        # split brain: each node formed its own cloud of 1 after the lookup gave up
        (cloud(1), 3, {"elapsed_s": 200, "formation_timeout_s": 150}, False, True, "CloudIncomplete"),
        (cloud(4), 3, {}, False, True, "CloudTooLarge"),
    ],
)
def test_readiness_decision(state, expected, kw, ready, failed, reason):
    d = decide(state, expected, **kw)
    assert (d.ready, d.failed, d.reason) == (ready, failed, reason)


def test_sizing_refuses_too_small_and_proposes_enough():
    small = ClusterConfig(replicas=1, memory="256m")
    with pytest.raises(ConfigError) as err:
        sizing.check(small, 200 * 2**20, "csv")
    assert err.value.field == "cluster.memory"
    proposed = sizing.advise(small, 200 * 2**20, "csv").proposed_memory_mb
    assert sizing.check(ClusterConfig(replicas=1, memory=f"{proposed}m"), 200 * 2**20, "csv").fits
    assert sizing.advise(small, 10 * 2**20, "parquet").required_total_mb > sizing.advise(small, 10 * 2**20, "csv").required_total_mb


@pytest.mark.parametrize(("reason", "retryable"), [("Reaped", True), ("NotFound", True), ("NodeExited", False),
                                                   ("OOMKilled", False)])
def test_a_failed_wait_is_retried_only_for_a_cluster_taken_from_its_run(reason, retryable):
    """A cluster a janitor deleted under its run is made again by a retry; a node that died stays dead."""
    from types import SimpleNamespace

    failed = SimpleNamespace(ready=False, failed=True, reason=reason, message="m")
    with pytest.raises(ClusterError) as err:
        poll_until_ready("h2o-x", lambda elapsed: failed, timeout_s=60, poll_s=0.01)
    assert (err.value.reason, err.value.retryable) == (reason, retryable)

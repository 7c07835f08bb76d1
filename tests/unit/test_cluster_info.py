"""ClusterInfo is the one typed value between tasks; the reconcile's comparison; the trigger never raises."""

import asyncio

from h2o_tasks.cluster import ClusterInfo
from h2o_tasks.cluster.kubernetes import _differs


def first_event(trigger):
    """The first event a trigger yields, run as the triggerer would."""
    async def first():
        gen = trigger.run()
        try:
            return await gen.__anext__()
        finally:
            await gen.aclose()

    return asyncio.run(first())


def test_cluster_info_round_trips_and_reads_the_extra_of_earlier_releases():
    info = ClusterInfo("c", "kubernetes", url="http://c.h2o.svc.cluster.local:54321", namespace="h2o",
                       endpoint_mode="port-forward", kubernetes_conn_id="k8s", dag_id="d", run_id="r")
    assert ClusterInfo.from_dict(info.to_dict()) == info
    old = {"name": "c", "backend": "kubernetes", "namespace": "h2o",
           "extra": {"endpoint_mode": "pod-ip", "kubernetes_conn_id": "k", "state_dir": "/s", "unknown": 1}}
    read = ClusterInfo.from_dict(old)
    assert (read.endpoint_mode, read.kubernetes_conn_id, read.state_dir) == ("pod-ip", "k", "/s")


def test_reconcile_sees_changed_fields_and_ignores_what_the_server_adds():
    wanted = {"replicas": 3, "template": {"spec": {"containers": [
        {"name": "h2o", "resources": {"limits": {"memory": "1024Mi", "cpu": "0.5"}}, "ports": [{"containerPort": 1}]}]}}}
    live = {"replicas": 3, "revisionHistoryLimit": 10, "template": {"spec": {"dnsPolicy": "ClusterFirst", "containers": [
        {"name": "h2o", "resources": {"limits": {"memory": "1Gi", "cpu": "500m"}}, "terminationMessagePath": "/dev",
         "ports": [{"containerPort": 1, "protocol": "TCP"}]}]}}}
    assert _differs(wanted, live, "spec") is None  # defaults added, quantities in canonical form
    assert _differs({**wanted, "replicas": 2}, live, "spec") == "spec.replicas"
    wanted["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "2Gi"
    assert _differs(wanted, live, "spec") == "spec.template.spec.containers[0].resources.limits.memory"
    assert _differs({"ports": [1, 2]}, {"ports": [1]}, "spec") == "spec.ports"


def test_an_error_of_the_trigger_itself_is_a_failed_event_not_a_raise(monkeypatch):
    from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger

    info = ClusterInfo("c", "local", replicas=1, endpoint_mode="local")
    trigger = H2OClusterReadyTrigger(info.to_dict(), timeout_s=5, poll_s=0.01)

    def broken():
        raise RuntimeError("the API answered 500")

    monkeypatch.setattr(trigger, "_backend", broken)
    event = first_event(trigger).payload
    assert (event["status"], event["reason"]) == ("failed", "TriggerError") and "500" in event["message"]


def test_the_expiry_only_moves_forward_and_stops_at_the_ceiling():
    from datetime import UTC, datetime, timedelta

    from h2o_tasks.cluster.base import extended_expiry

    now = datetime(2013, 3, 1, 12, tzinfo=UTC)
    later = (now + timedelta(hours=2)).isoformat()
    ceiling = (now + timedelta(hours=3)).isoformat()
    assert extended_expiry(later, ceiling, timedelta(minutes=30), now) == later  # never shortened
    assert extended_expiry(later, ceiling, timedelta(hours=2, minutes=30), now) == (now + timedelta(hours=2, minutes=30)).isoformat()
    assert extended_expiry(later, ceiling, timedelta(hours=9), now) == ceiling
    assert extended_expiry("", "", timedelta(hours=1), now) == (now + timedelta(hours=1)).isoformat()


def test_seconds_for_tests_replace_the_minutes(monkeypatch):
    from datetime import timedelta

    from h2o_tasks import testhooks
    from h2o_tasks.cluster.base import ClusterSpec, ceiling, ttl
    from h2o_tasks.config import ClusterConfig

    cfg = ClusterConfig(ttl_minutes=30, max_run_minutes=60)
    assert (ttl(cfg), ceiling(cfg)) == (timedelta(minutes=30), timedelta(minutes=60))
    monkeypatch.setenv(testhooks.CLUSTER_SECONDS_ENV, '{"ttl": 20, "ceiling": 45}')
    spec = ClusterSpec.for_run("p", "d", "r", cfg)
    assert (spec.ceiling_at - spec.expires_at) == timedelta(seconds=25)


def test_the_wait_tries_again_through_a_short_api_outage(monkeypatch):
    """Errors observing the cluster (an API server restarting) are waited through for the grace."""
    from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger
    from h2o_tasks.cluster import ClusterStatus

    answers = iter([ConnectionError("refused"), ConnectionError("refused"),
                    ClusterStatus("c", exists=True, ready=True, reason="Ready", message="ok", cloud_size=1)])

    class Flaky:
        async def astatus(self, api, info, *args):
            answer = next(answers)
            if isinstance(answer, Exception):
                raise answer
            return answer

        def aobserve(self, api, info, started_at, *args):
            from h2o_tasks.cluster.base import polled

            return polled(lambda elapsed: self.astatus(api, info, elapsed), started_at, 0.01)

        def close(self):
            pass

    info = ClusterInfo("c", "local", replicas=1, endpoint_mode="local")
    trigger = H2OClusterReadyTrigger(info.to_dict(), timeout_s=60, poll_s=0.01, grace_s=30)
    monkeypatch.setattr(trigger, "_backend", lambda: Flaky())
    monkeypatch.setattr("asyncio.sleep", _no_sleep)
    assert first_event(trigger).payload["status"] == "ready"


async def _no_sleep(_seconds):
    return None


def test_the_pod_cache_follows_events_and_counts_pods_that_went():
    """Watch events update the cache; a pod missing from a new list (gone while the watch was down)
    counts as gone, like a DELETED event, so the wait checks its StatefulSet again."""
    from h2o_tasks.cluster.podwatch import PodCache

    pod = lambda name, rv: {"metadata": {"name": name, "resourceVersion": rv}}  # noqa: E731
    cache = PodCache("h2o", "app=x")
    cache.relist({"a": pod("a", "1"), "b": pod("b", "2")}, "5")
    assert (sorted(cache.pods), cache.resource_version, cache.deleted) == (["a", "b"], "5", 0)
    cache.apply("MODIFIED", pod("a", "6"))
    cache.apply("ADDED", pod("c", "7"))
    cache.apply("DELETED", pod("b", "8"))
    assert (sorted(cache.pods), cache.resource_version, cache.deleted) == (["a", "c"], "8", 1)
    cache.relist({"a": pod("a", "9")}, "12")  # c went during a 410 gap
    assert (sorted(cache.pods), cache.resource_version, cache.deleted) == (["a"], "12", 2)

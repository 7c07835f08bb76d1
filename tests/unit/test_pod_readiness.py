"""Readiness of a StatefulSet's cloud from recorded pod states and /3/Cloud answers."""

import pytest

from h2o_tasks.cluster.pods import PodObservation, evaluate
from h2o_tasks.cluster.readiness import CloudState


def pod(name, ready=False, phase="Running", waiting=None, terminated=None, last_terminated=None, unschedulable=False,
        restarts=0):
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": "0/1 nodes are available: 1 Insufficient cpu."})
    state, last = {}, {}
    if waiting:
        state["waiting"] = {"reason": waiting, "message": "back-off pulling image"}
    if terminated:
        state["terminated"] = {"reason": terminated, "exitCode": 137}
    if last_terminated:
        last["terminated"] = {"reason": last_terminated, "exitCode": 137}
    raw = {"metadata": {"name": name}, "spec": {"nodeName": "node-1"},
           "status": {"phase": phase, "podIP": f"10.0.0.{name[-1]}", "conditions": conditions,
                      "containerStatuses": [{"name": "h2o", "state": state, "lastState": last,
                                              "restartCount": restarts}]}}
    return PodObservation.from_pod(raw)


CLOUD3 = CloudState(cloud_size=3, consensus=True, healthy=True, locked=False, cloud_name="c")
FORMED = {"elapsed_s": float("inf"), "formation_timeout_s": 0.0}
ALONE = CloudState(cloud_size=1, consensus=True, healthy=True, locked=False, cloud_name="c")


@pytest.mark.parametrize(
    ("pods", "cloud", "kw", "ready", "failed", "reason"),
    [
        # before the cloud forms every node answers 200 on isLeaderNode: all Ready, not done yet
        ([pod("h-0", True), pod("h-1", True), pod("h-2", True)], None, {}, False, False, "Forming"),
        ([pod("h-0", True), pod("h-1")], None, {}, False, False, "PodsPending"),
        # leader only, cloud whole
        ([pod("h-0", True), pod("h-1"), pod("h-2")], CLOUD3, {}, True, False, "Ready"),
        # leader only but its cloud is still missing a node
        ([pod("h-0", True), pod("h-1"), pod("h-2")], CloudState(2, False, True, False), {}, False, False, "Forming"),
        # split brain: every node formed its own cloud and stays leader
        ([pod("h-0", True), pod("h-1", True), pod("h-2", True)], ALONE,
         {"elapsed_s": 200, "formation_timeout_s": 150}, False, True, "SplitBrain"),
        # a leader whose cloud stays incomplete after the lookup timeout
        ([pod("h-0", True), pod("h-1"), pod("h-2")], CloudState(2, True, True, False),
         {"elapsed_s": 200, "formation_timeout_s": 150}, False, True, "CloudIncomplete"),
        ([pod("h-0", waiting="ImagePullBackOff"), pod("h-1"), pod("h-2")], None, {}, False, True, "ImagePullBackOff"),
        ([pod("h-0", waiting="ErrImagePull"), pod("h-1"), pod("h-2")], None, {}, False, True, "ErrImagePull"),
        ([pod("h-0"), pod("h-1", waiting="CrashLoopBackOff"), pod("h-2")], None, {}, False, True, "CrashLoopBackOff"),
        ([pod("h-0"), pod("h-1", last_terminated="OOMKilled", waiting="ContainerCreating")], None, {}, False, True,
         "OOMKilled"),
        ([pod("h-0", phase="Pending", unschedulable=True), pod("h-1"), pod("h-2")], None, {}, False, True,
         "Unschedulable"),
        ([pod("h-0", terminated="Error"), pod("h-1"), pod("h-2")], None, {}, False, True, "Terminated"),
        ([pod("h-0", phase="Failed"), pod("h-1"), pod("h-2")], None, {}, False, True, "Terminated"),
        # after formation (the training watch): a deleted pod, a restarted pod
        ([pod("h-0", True), pod("h-2")], CLOUD3, FORMED, False, True, "PodLost"),
        ([pod("h-0", True), pod("h-1", restarts=1), pod("h-2")], CLOUD3, FORMED, False, True, "PodRestarted"),
        ([pod("h-0", True), pod("h-1", True), pod("h-2")], CLOUD3, FORMED, False, True, "PodReplaced"),
        # the same states while the cloud may still be forming: keep waiting
        ([pod("h-0", True), pod("h-2")], None, {}, False, False, "PodsPending"),
        ([pod("h-0", True), pod("h-1", restarts=1), pod("h-2")], CLOUD3, {}, True, False, "Ready"),
    ],
)
def test_evaluate(pods, cloud, kw, ready, failed, reason):
    d = evaluate(pods, 3, cloud, **kw)
    assert (d.ready, d.failed, d.reason) == (ready, failed, reason), d.message


def test_failure_message_names_pod_and_fix():
    d = evaluate([pod("h-1", last_terminated="OOMKilled")], 1, None)
    assert "h-1" in d.message and "cluster.memory" in d.message
    d = evaluate([pod("h-0", phase="Pending", unschedulable=True)], 1, None)
    assert "Insufficient cpu" in d.message

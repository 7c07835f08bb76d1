"""Reading the pods of an H2O StatefulSet: who is the leader, and is anything broken?

Pure functions of recorded pod states (as the Kubernetes API returns them, as dicts), so
each failure reason is unit-tested without a cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from h2o_tasks.cluster.readiness import CloudState, Decision, decide

# Waiting reasons after which waiting longer cannot help.
FATAL_WAITING = {
    "ImagePullBackOff": "the image cannot be pulled",
    "ErrImagePull": "the image cannot be pulled",
    "InvalidImageName": "the image name is invalid",
    "CrashLoopBackOff": "the H2O container keeps crashing",
    "CreateContainerConfigError": "the container configuration is invalid (a missing Secret or ConfigMap?)",
    "CreateContainerError": "the container cannot be created",
    "RunContainerError": "the container cannot be started",
}


@dataclass(frozen=True)
class PodObservation:
    name: str
    phase: str
    ready: bool
    ip: str = ""
    node: str = ""
    failure: str = ""  # a reason from FATAL_WAITING, OOMKilled, Unschedulable, Terminated, Evicted
    message: str = ""
    restarts: int = 0  # container restarts: a restarted H2O node never rejoins its cloud

    @classmethod
    def from_pod(cls, pod: dict[str, Any]) -> PodObservation:
        meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        ready = (conditions.get("Ready") or {}).get("status") == "True"
        failure, message = pod_failure(status, conditions)
        restarts = sum(int(cs.get("restartCount") or 0) for cs in status.get("containerStatuses") or [])
        return cls(name=meta.get("name", ""), phase=status.get("phase", "Pending"), ready=ready,
                   ip=status.get("podIP") or "", node=spec.get("nodeName") or "", failure=failure, message=message,
                   restarts=restarts)


def pod_failure(status: dict[str, Any], conditions: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The reason this pod will never serve, or ``("", "")``."""
    if status.get("phase") in ("Failed", "Succeeded"):
        return (status.get("reason") or "Terminated",
                status.get("message") or f"the pod is {status.get('phase')}: H2O nodes must keep running")
    sched = conditions.get("PodScheduled") or {}
    if sched.get("status") == "False" and sched.get("reason") == "Unschedulable":
        return "Unschedulable", sched.get("message") or "no node can run the pod (requests too large?)"
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FATAL_WAITING:
            return waiting["reason"], f"{FATAL_WAITING[waiting['reason']]}: {waiting.get('message', '')}".rstrip(": ")
        for state in ((cs.get("state") or {}).get("terminated"), (cs.get("lastState") or {}).get("terminated")):
            if state and state.get("reason") == "OOMKilled":
                return "OOMKilled", "the H2O container ran out of memory: raise cluster.memory"
        if (cs.get("state") or {}).get("terminated"):
            t = cs["state"]["terminated"]
            return "Terminated", f"the H2O container exited with code {t.get('exitCode')} ({t.get('reason', '')})"
    return "", ""


def evaluate(pods: list[PodObservation], expected: int, cloud: CloudState | None, *, elapsed_s: float = 0.0,
             formation_timeout_s: float | None = None) -> Decision:
    """Readiness of the StatefulSet's cloud from its pods and the leader's ``/3/Cloud``.

    Ready: every pod exists, no pod failed, exactly one pod is Ready (the leader: the others
    answer 404 on ``/kubernetes/isLeaderNode`` once the cloud formed) and the leader's cloud
    has ``expected`` nodes with consensus.

    After ``formation_timeout_s`` (and for a cloud that already formed, which the training
    watch asks with ``elapsed_s=inf``) a missing or restarted pod is a node the cloud lost:
    H2O clouds do not take new members once formed.
    """
    for p in pods:
        if p.failure:
            return Decision(False, failed=True, reason=p.failure, message=f"pod {p.name}: {p.message}")
    late = formation_timeout_s is not None and elapsed_s > formation_timeout_s
    if len(pods) < expected:
        if late:
            return Decision(False, failed=True, reason="PodLost",
                            message=f"only {len(pods)} of {expected} pods exist ({', '.join(p.name for p in pods)}): "
                                    "a pod was deleted or evicted")
        return Decision(False, reason="PodsPending", message=f"{len(pods)} of {expected} pods exist")
    restarted = [p for p in pods if p.restarts]
    if restarted and late:
        return Decision(False, failed=True, reason="PodRestarted",
                        message=f"pod {restarted[0].name} restarted {restarted[0].restarts} time(s): "
                                "its new H2O node cannot rejoin the cloud")
    ready = [p for p in pods if p.ready]
    if len(ready) != 1:
        if len(ready) > 1 and math.isinf(elapsed_s):  # the watch of a formed cloud
            return Decision(False, failed=True, reason="PodReplaced",
                            message=f"{len(ready)} pods answer as leader ({', '.join(p.name for p in ready)}): a "
                                    "node was replaced (pod deleted or restarted) and its new H2O formed a cloud "
                                    "of its own")
        if len(ready) > 1 and late:
            return Decision(False, failed=True, reason="SplitBrain",
                            message=f"{len(ready)} pods report being leader after {elapsed_s:.0f}s: the nodes formed "
                                    "separate clouds (lookup timeout too short, or DNS did not list all pods)")
        return Decision(False, reason="Forming", message=f"{len(ready)} pods ready (waiting for a single leader)")
    return decide(cloud, expected, elapsed_s=elapsed_s, formation_timeout_s=formation_timeout_s)


def leader(pods: list[PodObservation]) -> PodObservation | None:
    ready = [p for p in pods if p.ready]
    return ready[0] if len(ready) == 1 else None

"""Readiness on the Kubernetes test bed (real API server, StatefulSet controller, node agent).

Per repetition: one cluster with the project's manifests (reference poller on every pod's
``/3/Cloud`` each 100 ms, the backend's wait at the trigger's 100 ms), and one whose
readiness probe has the H2O Kubernetes guide's settings (5 s delay, 5 s period), timed
from create to the same wait returning.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.common import log
from benchmarks.readiness import GUIDE_DELAY_S, GUIDE_PERIOD_S, REFERENCE_PERIOD_S, Observation, Prober, cloud_ready, results
from h2o_tasks.cluster import manifests
from h2o_tasks.cluster.base import ClusterSpec
from h2o_tasks.config import ClusterConfig

NAMESPACE = "h2o"


@contextlib.contextmanager
def bed(workdir: Path) -> Iterator[Any]:
    """Control plane, pod network, cluster DNS, node agent and RBAC (the e2e fixtures' parts)."""
    from testbed import controlplane
    from tests.fixtures.k8s_bed import running_bed

    cp = controlplane.start(workdir / "k8s")
    try:
        with running_bed(cp, workdir) as b:
            yield b.airflow
    finally:
        cp.stop()


def _guide_render(spec: ClusterSpec) -> list[Any]:
    out = _RENDER(spec)
    for m in out:
        if m.kind == "StatefulSet":
            probe = m.body["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
            probe.update(initialDelaySeconds=int(GUIDE_DELAY_S), periodSeconds=int(GUIDE_PERIOD_S))
    return out


_RENDER = manifests.render


def _one(backend: Any, run_id: str, config: ClusterConfig, guide: bool) -> tuple[float, float | None]:
    """(create -> wait returned, create -> reference poller saw the cloud) in seconds."""
    spec = ClusterSpec.for_run("bench", "bench", run_id, config)
    patch = mock.patch.object(manifests, "render", _guide_render) if guide else contextlib.nullcontext()
    t0 = time.monotonic()
    with patch:
        info = backend.create(spec)
    try:
        from h2o_tasks.cluster.kubernetes import H2O_PORT

        def urls() -> list[str]:
            return [f"http://{p.ip}:{H2O_PORT}" for p in backend._pods(info.name, NAMESPACE) if p.ip]

        ref = None if guide else Prober(cloud_ready(urls, config.replicas), t0, 0.0, REFERENCE_PERIOD_S)
        if ref:
            ref.start()
        backend.wait_ready(info, timeout_s=240, poll_s=0.1)
        wait_s = time.monotonic() - t0
        if ref:
            ref.join(30)
        return wait_s, (ref.at if ref else None)
    finally:
        backend.delete(info)


def run(reps: int, workdir: Path) -> list[Any]:
    from h2o_tasks.cluster.kubernetes import KubernetesBackend

    config = ClusterConfig(backend="kubernetes", replicas=2, memory="768m", nthreads=1, namespace=NAMESPACE,
                           cpu="500m", endpoint_mode="pod-ip", lookup_timeout_s=60, image="h2o-airflow/h2o:3.46.0.11")
    obs: list[Observation] = []
    with bed(workdir) as client:
        backend = KubernetesBackend(client, namespace=NAMESPACE, endpoint_mode="pod-ip")
        for i in range(reps):
            wait_s, formed = _one(backend, f"k8s-{os.getpid()}-{i}", config, guide=False)
            guide_s, _ = _one(backend, f"k8s-guide-{os.getpid()}-{i}", config, guide=True)
            if formed is None:
                raise RuntimeError("the reference poller never saw the cloud ready")
            obs.append(Observation(formed, wait_s, guide_s))
            log(f"    rep {i + 1}/{reps}: formed {formed:.2f}s, wait returned {wait_s:.2f}s, guide manifest {guide_s:.2f}s")
    out = results("kubernetes", obs, "test bed: 2 pods x 768m, 500m CPU; project probe 1 s delay / 2 s period; "
                                     "guide = the same manifests with a 5 s / 5 s readiness probe, same wait")
    out[1].baseline_label = "create -> ready with the guide's readiness probe (5 s delay, 5 s period), same wait"
    return out

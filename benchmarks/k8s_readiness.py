"""Readiness on the Kubernetes test bed (real API server, StatefulSet controller, node agent).

Per repetition: one cluster with the project's manifests (reference poller on every pod's
``/3/Cloud`` each 100 ms, the backend's wait at the trigger's 100 ms), and one whose
readiness probe has the H2O Kubernetes guide's settings (5 s delay, 5 s period), timed
from create to the same wait returning.

Then the wait's load on the API server: 1 and 5 clusters (2 replicas x 512m) forming at once,
waited for by the trigger (pods watched) and by the 100 ms poller it replaced (StatefulSet read
and pods listed at every poll), in the same run. The requests are counted from the API server's
audit log, for the Airflow identity only (the clusters are created by the admin identity, and
the reference poller finds pods as admin too).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.common import Result, log
from benchmarks.readiness import GUIDE_DELAY_S, GUIDE_PERIOD_S, REFERENCE_PERIOD_S, Observation, Prober, cloud_ready, results
from h2o_tasks.cluster import manifests
from h2o_tasks.cluster.base import ClusterSpec
from h2o_tasks.config import ClusterConfig
from tests.fixtures.k8s_bed import DOMAIN, IMAGE

NAMESPACE = "h2o"


@contextlib.contextmanager
def bed(workdir: Path) -> Iterator[Any]:
    """Control plane, pod network, cluster DNS, node agent and RBAC (the e2e fixtures' parts)."""
    from testbed import controlplane
    from tests.fixtures.k8s_bed import running_bed

    cp = controlplane.start(workdir / "k8s")
    try:
        with running_bed(cp, workdir) as b:
            yield b
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

        ref = None if guide else Prober(cloud_ready(urls, config.replicas, backend.login(info)), t0, 0.0,
                                        REFERENCE_PERIOD_S)
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
                           cpu="500m", endpoint_mode="pod-ip", lookup_timeout_s=60, image=IMAGE, cluster_domain=DOMAIN)
    obs: list[Observation] = []
    with bed(workdir) as b:
        backend = KubernetesBackend(b.airflow, namespace=NAMESPACE, endpoint_mode="pod-ip")
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
        for n in FORMING:
            out += api_load(b, n)
    return out


FORMING = (1, 5)
POLLER_S = 0.1  # the wait before the watch: StatefulSet read + pods listed every 100 ms


@dataclass
class Load:
    requests: int  # API requests of the airflow identity during the waits
    forming_s: float  # sum over the clusters of create -> its wait returned
    lags: list[float]  # per cluster: wait returned - reference poller saw the cloud whole

    @property
    def per_second(self) -> float:
        return self.requests / self.forming_s


def _waits(b: Any, mode: str, n: int) -> Load:
    """``n`` clusters created at once (admin), waited for at once in one event loop (the triggerer's)."""
    import asyncio
    from datetime import UTC, datetime

    from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger
    from h2o_tasks.cluster.base import polled
    from h2o_tasks.cluster.kubernetes import H2O_PORT, KubernetesBackend

    admin = KubernetesBackend(b.admin, namespace=NAMESPACE, endpoint_mode="pod-ip")
    config = ClusterConfig(backend="kubernetes", replicas=2, memory="512m", nthreads=1, namespace=NAMESPACE,
                           cpu="250m", endpoint_mode="pod-ip", lookup_timeout_s=180, image=IMAGE, cluster_domain=DOMAIN)
    t0 = time.monotonic()
    since = datetime.now(UTC)
    infos = [admin.create(ClusterSpec.for_run("bench", "bench", f"load-{mode}-{n}-{i}-{os.getpid()}", config))
             for i in range(n)]
    refs = []
    for info in infos:
        urls = (lambda name: lambda: [f"http://{p.ip}:{H2O_PORT}" for p in admin._pods(name, NAMESPACE) if p.ip])(info.name)
        refs.append(Prober(cloud_ready(urls, config.replicas, admin.login(info)), t0, 0.0, REFERENCE_PERIOD_S))
        refs[-1].start()

    async def one(info: Any) -> float:
        if mode == "watch":
            trigger = H2OClusterReadyTrigger(info.to_dict(), timeout_s=600, formation_timeout_s=300)
            async for event in trigger.run():
                if event.payload["status"] != "ready":
                    raise RuntimeError(f"{info.name}: {event.payload}")
                return time.monotonic() - t0
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

        waiter = KubernetesBackend(b.airflow, namespace=NAMESPACE, endpoint_mode="pod-ip")
        async with AsyncKubernetesHook(conn_id="kubernetes_default").get_conn() as api:
            async for st in polled(lambda e: waiter.astatus(api, info, e, 300), time.time(), POLLER_S):
                if st.ready or st.failed:
                    if not st.ready:
                        raise RuntimeError(f"{info.name}: {st}")
                    return time.monotonic() - t0
        raise RuntimeError("the poller ended")

    async def all_waits() -> list[float]:
        return list(await asyncio.gather(*(one(i) for i in infos)))

    try:
        done = asyncio.run(all_waits())
        until = datetime.now(UTC)
        for r in refs:
            r.join(30)
        if any(r.at is None for r in refs):
            raise RuntimeError("the reference poller never saw a cloud whole")
        requests = b.control_plane.audit_requests(since=since, until=until)
        return Load(len(requests), sum(done), [w - r.at for w, r in zip(done, refs, strict=True)])
    finally:
        for r in refs:
            r.stop.set()
        for info in infos:
            admin.delete(info)


def api_load(b: Any, n: int) -> list[Result]:
    """API requests per forming cluster per second, and detection lag, watch vs the 100 ms poller."""
    import json

    from benchmarks.common import median

    env = {"AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(b.control_plane.airflow_kubeconfig),
                                              "namespace": NAMESPACE}})}
    with mock.patch.dict(os.environ, env):
        watch, poll = _waits(b, "watch", n), _waits(b, "poll", n)
    log(f"    {n} forming at once: watch {watch.requests} requests over {watch.forming_s:.1f} cluster-seconds "
        f"({watch.per_second:.2f}/s), lags {[round(x, 2) for x in watch.lags]}; poller {poll.requests} over "
        f"{poll.forming_s:.1f} ({poll.per_second:.2f}/s), lags {[round(x, 2) for x in poll.lags]}")
    notes = (f"test bed; {n} cluster(s) of 2 pods x 512m created at once, waited for at once in one event loop; "
             "requests of the airflow identity from the API server's audit log, divided by the sum of the "
             "clusters' create -> ready seconds")
    rate = Result(
        name=f"api_requests_forming_{n}", title=f"API requests per forming cluster per second ({n} at once)",
        unit="requests/s", project_label="trigger: pods listed once and watched, /3/Cloud once one pod leads",
        baseline_label="100 ms poller: StatefulSet read + pods listed per poll",
        project=round(watch.per_second, 3), baseline=round(poll.per_second, 3),
        ratio=round(watch.per_second / poll.per_second, 4) if poll.per_second else None,
        ratio_definition="project / poller requests per second", target="<= 1 request/s per forming cluster",
        met=watch.per_second <= 1.0,
        samples={"requests": [watch.requests, poll.requests], "forming_s": [round(watch.forming_s, 2),
                                                                           round(poll.forming_s, 2)]},
        notes=notes)
    lag, base = median([round(x, 3) for x in watch.lags]), median([round(x, 3) for x in poll.lags])
    detect = Result(
        name=f"readiness_detection_forming_{n}", title=f"Readiness detected after the cloud formed ({n} forming at once)",
        unit="s", project_label="trigger (watch) returns after the reference poller saw the cloud whole",
        baseline_label="the 100 ms poller, same clusters' reference", project=lag, baseline=base,
        ratio=None, ratio_definition="none: the target is absolute (lag <= 1 s)", target="<= 1 s",
        met=lag is not None and lag <= 1.0,
        samples={"watch_lag_s": [round(x, 3) for x in watch.lags], "poller_lag_s": [round(x, 3) for x in poll.lags]},
        notes=notes)
    return [rate, detect]

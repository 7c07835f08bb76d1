"""Readiness: how soon the pipeline's wait returns once the cloud has actually formed.

Per repetition, on one new cluster: a reference poller asks ``/3/Cloud`` every 100 ms (the
moment the cloud is whole), the pipeline's own wait runs (``H2OClusterReadyTrigger``, as the
deferred operator uses it), and a probe with the H2O Kubernetes guide's settings (first at
5 s, then every 5 s) records when it would have declared the cluster ready.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Result, log, median, skipped
from h2o_tasks.cluster.base import ClusterInfo, ClusterSpec
from h2o_tasks.cluster.local import LocalBackend
from h2o_tasks.cluster.login import Login
from h2o_tasks.cluster.readiness import decide, fetch_cloud
from h2o_tasks.config import ClusterConfig

GUIDE_DELAY_S, GUIDE_PERIOD_S = 5.0, 5.0
REFERENCE_PERIOD_S = 0.1


@dataclass
class Observation:
    formed_s: float  # reference poller: cloud whole, from create
    wait_s: float  # the pipeline's wait returned, from create
    guide_s: float  # a 5 s / 5 s probe first saw it ready, from create

    @property
    def lag_s(self) -> float:
        return self.wait_s - self.formed_s


class Prober(threading.Thread):
    """Calls ``ready()`` at ``delay`` then every ``period`` seconds; records the first success."""

    def __init__(self, ready: Callable[[], bool], t0: float, delay: float, period: float) -> None:
        super().__init__(daemon=True)
        self.ready, self.t0, self.delay, self.period = ready, t0, delay, period
        self.at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        tick = self.t0 + self.delay
        while not self.stop.is_set():
            self.stop.wait(max(0.0, tick - time.monotonic()))
            if self.stop.is_set():
                return
            if self.ready():
                self.at = time.monotonic() - self.t0
                return
            tick += self.period


def cloud_ready(urls: Callable[[], list[str]], expected: int, login: Login | None = None) -> Callable[[], bool]:
    """A probe of the reference pollers: does any of ``urls`` answer with the whole cloud (asked with ``login``)?"""
    def ready() -> bool:
        return any(decide(fetch_cloud(u, login, timeout=1.0), expected).ready for u in urls())
    return ready


def _trigger_wait(info: ClusterInfo, timeout_s: float) -> str:
    from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger

    async def first_event() -> str:
        trigger = H2OClusterReadyTrigger(info.to_dict(), timeout_s=timeout_s, poll_s=0.1)
        async for event in trigger.run():
            return event.payload["status"]
        return "none"

    return asyncio.run(first_event())


def observe_local(backend: LocalBackend, run_id: str, config: ClusterConfig) -> Observation:
    spec = ClusterSpec.for_run("bench", "bench", run_id, config)
    t0 = time.monotonic()
    info = backend.create(spec)
    try:
        ready = cloud_ready(lambda: [info.url], config.replicas, backend.login(info))
        ref = Prober(ready, t0, 0.0, REFERENCE_PERIOD_S)
        guide = Prober(ready, t0, GUIDE_DELAY_S, GUIDE_PERIOD_S)
        ref.start()
        guide.start()
        status = _trigger_wait(info, 180)
        wait_s = time.monotonic() - t0
        if status != "ready":
            raise RuntimeError(f"cluster {info.name}: wait ended {status}")
        ref.join(30)
        guide.join(30)
        if ref.at is None or guide.at is None:
            raise RuntimeError("the reference or guide probe never saw the cloud ready")
        return Observation(ref.at, wait_s, guide.at)
    finally:
        backend.delete(info)


def results(kind: str, obs: list[Observation], notes: str) -> list[Result]:
    lags = [round(o.lag_s, 3) for o in obs]
    waits = [round(o.wait_s, 3) for o in obs]
    guides = [round(o.guide_s, 3) for o in obs]
    formed = [round(o.formed_s, 3) for o in obs]
    lag = median(lags)
    detect = Result(
        name=f"readiness_detection_{kind}", title=f"Readiness detected after the cloud formed ({kind})", unit="s",
        project_label="pipeline wait returns, after the cloud formed",
        baseline_label="reference poller, /3/Cloud every 100 ms (0 by definition)",
        project=lag, baseline=0.0, ratio=None, ratio_definition="none: the target is absolute (lag <= 1 s)",
        target="<= 1 s", met=lag is not None and lag <= 1.0,
        samples={"lag_s": lags, "formed_s": formed}, notes=notes)
    pw, gw = median(waits), median(guides)
    create = Result(
        name=f"create_to_ready_{kind}", title=f"Create to ready ({kind})", unit="s",
        project_label="create -> pipeline wait returns",
        baseline_label=f"create -> ready seen by a probe at {GUIDE_DELAY_S:.0f} s delay, {GUIDE_PERIOD_S:.0f} s period "
                       "(H2O Kubernetes guide)",
        project=pw, baseline=gw, ratio=round(pw / gw, 3) if pw and gw else None,
        ratio_definition="project / guide seconds (lower is better)", target="informative (no target)", met=None,
        samples={"project_s": waits, "guide_s": guides}, notes=notes)
    return [detect, create]


def run_local(reps: int, state_dir: Path) -> list[Result]:
    backend = LocalBackend(state_dir=state_dir)
    config = ClusterConfig(replicas=2, memory="1g", nthreads=1)
    obs = []
    for i in range(reps):
        o = observe_local(backend, f"readiness-{os.getpid()}-{i}", config)
        log(f"    rep {i + 1}/{reps}: formed {o.formed_s:.2f}s, wait returned {o.wait_s:.2f}s "
            f"(lag {o.lag_s:+.2f}s), guide probe {o.guide_s:.2f}s")
        obs.append(o)
    return results("local", obs, "local backend, 2 JVMs x 1g, 1 thread each (the example pipeline's cluster)")


def run_kubernetes(reps: int, workdir: Path) -> list[Result]:
    """The same on the Kubernetes test bed, when its binaries are built and we are root."""
    title = "Readiness on Kubernetes (test bed)"
    try:
        from testbed import controlplane
    except ImportError as exc:
        return [skipped("readiness_detection_kubernetes", title, f"testbed not importable: {exc}")]
    missing = controlplane.missing_binaries()
    if missing:
        return [skipped("readiness_detection_kubernetes", title,
                        f"test bed binaries missing ({', '.join(p.name for p in missing)}): run testbed/build.sh")]
    if os.geteuid() != 0:
        return [skipped("readiness_detection_kubernetes", title, "the test bed needs root (network namespaces)")]
    try:
        from benchmarks import k8s_readiness

        return k8s_readiness.run(reps, workdir)
    except Exception as exc:  # the bed is optional: record why it did not run
        return [skipped("readiness_detection_kubernetes", title, f"test bed failed: {type(exc).__name__}: {exc}"[:500])]

"""Shared pieces: results, medians, interleaved repetitions, the machine's description."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """Cores, memory and load now (the figures are only comparable within one run)."""
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {"cores": os.cpu_count() or 1, "memory_gib": round(mem_kib / 2**20, 1),
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


@dataclass
class Result:
    """One benchmark: the project's median, the baseline's median from the same run, the ratio.

    ``ratio`` is defined per benchmark (``ratio_definition``) so that it reads against ``target``.
    """

    name: str
    title: str
    unit: str
    project_label: str
    baseline_label: str
    project: float | None = None
    baseline: float | None = None
    ratio: float | None = None
    ratio_definition: str = ""
    target: str = ""
    met: bool | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    skipped: str = ""
    machine: dict[str, Any] = field(default_factory=machine)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def skipped(name: str, title: str, reason: str) -> Result:
    reason = " ".join(reason.split())[:300]
    return Result(name=name, title=title, unit="", project_label="", baseline_label="", skipped=f"skipped: {reason}")


def interleaved(reps: int, runs: dict[str, Callable[[], float]], log: Callable[[str], None] = print) -> dict[str, list[float]]:
    """Run every measurement ``reps`` times, alternating their order, and collect the figures."""
    names = list(runs)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for n in order:
            value = runs[n]()
            samples[n].append(round(value, 4))
            log(f"    rep {rep + 1}/{reps} {n}: {value:.3f}")
    return samples


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.t0 = time.monotonic()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.t0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@contextlib.contextmanager
def local_cloud(state_dir: Path, run_id: str, config: Any, s3: Any) -> Iterator[Any]:
    """A local H2O cloud for one benchmark: created, waited for, connected (``h2o`` is yielded), then deleted."""
    from h2o_tasks.cluster.base import ClusterSpec
    from h2o_tasks.cluster.local import LocalBackend
    from h2o_tasks.session import connect

    backend = LocalBackend(state_dir=state_dir, s3_endpoint=s3.endpoint_url)
    info = backend.create(ClusterSpec.for_run("bench", "bench", run_id, config, s3_endpoint=s3.endpoint_url))
    try:
        backend.wait_ready(info, 180)
        connect(info.url, s3, login=backend.login(info))
        import h2o

        yield h2o
    finally:
        with contextlib.suppress(Exception):
            import h2o

            h2o.connection().close()
        backend.delete(info)

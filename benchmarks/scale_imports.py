"""The S3 import as data grows: the pipeline's import against a raw download and the parse floor.

Data: the scale series' flights (:mod:`benchmarks.offline_scale`: each day's rows ``k`` times,
0.34M, 1.3M and 5.4M rows over 365 days), as the daily ``dt=`` files the pipeline reads, and the
same rows laid out as monthly files (12 objects, tens of MB each at 16x) for the nodes' own import.

Measured at each size on one 2-node local cloud (2 x 3g, 1 thread each: room for 16x), every way
in the same run, interleaved:

- project: :func:`h2o_tasks.ingest.import_interval`, the pipeline's S3 import of the year (the
  task downloads and uploads an input up to ``client_fetch_max_bytes``, the nodes read a bigger one);
- the nodes' own import of the daily files (``client_fetch_max_bytes`` 0) and of the monthly files;
- raw download: boto3 downloads the daily files to local disk (8 threads);
- local parse: H2O parses those downloaded files from local disk, set up as the pipeline sets up a
  Parquet parse (:func:`h2o_tasks.sources.s3.import_frame` without a client).

The parse floor is raw download + local parse: what any import of the same files must at least
do. Ratio: the project against the floor (target <= 1.3 at 16x). Plotted log-log to
``scale_imports.png``.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks import offline_scale, plots
from benchmarks.common import ROOT, Result, Stopwatch, interleaved, local_cloud, log, median
from benchmarks.stack import BUCKET, Stack

PLOT = ROOT / "benchmarks" / "scale_imports.png"
WAYS = ("project", "nodes_daily", "nodes_monthly", "raw_download", "local_parse")
LABELS = {"project": "pipeline's import", "nodes_daily": "nodes, daily files", "nodes_monthly": "nodes, monthly files",
          "raw_download": "raw download", "parse_floor": "parse floor (download + local parse)"}
FLOOR_TARGET = 1.3


def build_monthly(daily: Path, k: int, interval: tuple[date, date]) -> Path:
    """The daily files of ``daily`` in ``interval`` concatenated by month (``month=YYYY-MM/part-0.parquet``); cached."""
    import pyarrow.parquet as pq

    from devtools.stack.seed import flight_partitions

    out = offline_scale.scaled_dir(k).with_name(f"flights-{k}x-monthly-{interval[0]}-{interval[1]}")
    days = [p for p in flight_partitions(daily) if str(interval[0]) <= p.parent.name[3:] < str(interval[1])]
    marker = f"{k}x {len(days)} days by month"
    if (out / "_COMPLETE").exists() and (out / "_COMPLETE").read_text() == marker:
        return out
    tmp = out.with_name(f"{out.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    months: dict[str, list[Path]] = {}
    for path in days:  # .../dt=YYYY-MM-DD/part-0.parquet
        months.setdefault(path.parent.name[3:10], []).append(path)
    for month, paths in months.items():
        target = tmp / f"month={month}" / "part-0.parquet"
        target.parent.mkdir(parents=True)
        with pq.ParquetWriter(target, pq.read_schema(paths[0])) as writer:
            for p in paths:
                writer.write_table(pq.read_table(p))
    (tmp / "_COMPLETE").write_text(marker)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def upload_monthly(st: Stack, directory: Path, prefix: str) -> list[str]:
    """Every monthly file under ``s3://BUCKET/prefix/``; their URIs in month order."""
    client = st.s3.client()
    files = sorted(directory.glob("month=*/part-0.parquet"))
    keys = [f"{prefix}/{p.parent.name}/{p.name}" for p in files]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda pk: client.upload_file(str(pk[0]), BUCKET, pk[1]), zip(files, keys, strict=True)))
    return [f"s3://{BUCKET}/{k}" for k in keys]


def config(uri: str, days: int, max_fetch_bytes: int | None = None) -> Any:
    """The example pipeline reading ``uri``, its training window ``days`` long."""
    import yaml

    from benchmarks.imports import PIPELINE
    from h2o_tasks import config as pipeline_config

    raw = yaml.safe_load(PIPELINE.read_text())
    raw["source"]["training_window_days"] = days
    raw["source"]["s3"]["uri"] = uri
    if max_fetch_bytes is not None:
        raw["source"]["s3"]["client_fetch_max_bytes"] = max_fetch_bytes
    return pipeline_config.parse(raw)


class Ways:
    """The measured imports of one size; each records the rows it got in ``rows``."""

    def __init__(self, h2o: Any, st: Stack, k: int, interval: tuple[date, date], monthly: list[str], scratch: Path):
        from h2o_tasks.config import S3SourceConfig
        from h2o_tasks.sources import s3 as s3_source

        self.h2o, self.st, self.interval, self.monthly, self.scratch = h2o, st, interval, monthly, scratch
        self.client = st.s3.client()
        uri = f"s3://{BUCKET}/bench-scale-{k}x"
        days = (interval[1] - interval[0]).days
        self.cfg, self.nodes_cfg = config(uri, days), config(uri, days, 0)
        self.resolved = s3_source.resolve(self.client, S3SourceConfig(uri=uri), *interval)
        self.monthly_bytes = sum(self.client.head_object(Bucket=BUCKET, Key=u.split("/", 3)[3])["ContentLength"]
                                 for u in monthly)
        self.rows: dict[str, set[int]] = {}

    def _keep(self, way: str, frame: Any) -> None:
        self.rows.setdefault(way, set()).add(int(frame.nrows))
        self.h2o.remove(frame)

    def project(self) -> float:
        from h2o_tasks import ingest

        with Stopwatch() as sw:
            frame, _ = ingest.import_interval(self.h2o, self.cfg, "train", *self.interval, s3=self.st.s3)
        self._keep("project", frame)
        return sw.seconds

    def nodes_daily(self) -> float:
        from h2o_tasks import ingest

        with Stopwatch() as sw:
            frame, _ = ingest.import_interval(self.h2o, self.nodes_cfg, "train", *self.interval, s3=self.st.s3)
        self._keep("nodes_daily", frame)
        return sw.seconds

    def nodes_monthly(self) -> float:
        from h2o_tasks.sources import s3 as s3_source

        whole = s3_source.ResolvedInput(files=tuple(self.monthly), total_bytes=self.monthly_bytes, days_found=())
        with Stopwatch() as sw:
            frame = s3_source.import_frame(self.h2o, whole, "parquet", "bench_monthly", client=self.client)
        self._keep("nodes_monthly", frame)
        return sw.seconds

    def raw_download(self) -> float:
        """The daily files to local disk (kept for :meth:`local_parse`)."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)

        def get(iu: tuple[int, str]) -> None:
            bucket, key = iu[1][5:].split("/", 1)
            self.client.download_file(bucket, key, str(self.scratch / f"{iu[0]:05d}.parquet"))

        with Stopwatch() as sw, ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(get, enumerate(self.resolved.files)))
        return sw.seconds

    def local_parse(self) -> float:
        from h2o_tasks.sources import s3 as s3_source

        if not self.scratch.is_dir():
            self.raw_download()
        files = tuple(str(p) for p in sorted(self.scratch.glob("*.parquet")))
        local = s3_source.ResolvedInput(files=files, total_bytes=self.resolved.total_bytes, days_found=())
        with Stopwatch() as sw:
            frame = s3_source.import_frame(self.h2o, local, "parquet", "bench_local")
        self._keep("local_parse", frame)
        return sw.seconds


def run(reps: int, st: Stack, work: Path, state_dir: Path, max_scale: int, quick: bool,
        plot_path: Path = PLOT) -> list[Result]:
    """Every size up to ``max_scale``, ``reps`` repetitions interleaved; the plot to ``plot_path``."""
    from h2o_tasks.config import ClusterConfig

    interval = offline_scale.QUICK_INTERVAL if quick else offline_scale.FULL_INTERVAL
    sizes = [k for k in offline_scale.SIZES if k <= max_scale] or [1]
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[int, dict[str, Any]] = {}
    cluster = ClusterConfig(replicas=2, memory="3g", nthreads=1)
    with local_cloud(state_dir, f"scale-imports-{os.getpid()}", cluster, st.s3) as h2o:
        for k in sizes:
            daily = offline_scale.build(st.data_dir, k)
            offline_scale.upload(st, daily, f"bench-scale-{k}x")
            monthly = upload_monthly(st, build_monthly(daily, k, interval), f"bench-scale-{k}x-monthly")
            ways = Ways(h2o, st, k, interval, monthly, work / f"download-{k}x")
            path = ("downloaded by the task, uploaded as one file"
                    if 0 < ways.resolved.total_bytes <= ways.cfg.source.s3.client_fetch_max_bytes
                    else "read by the nodes")
            log(f"  {k}x: {len(ways.resolved.files)} daily files, {ways.resolved.total_bytes / 2**20:.1f} MB "
                f"({path}); {len(monthly)} monthly files, {ways.monthly_bytes / 2**20:.1f} MB; {reps} reps")
            ways.project()  # the cloud's first import of this size: class loading and JIT, not measured
            samples = interleaved(reps, {w: getattr(ways, w) for w in WAYS}, log)
            shutil.rmtree(ways.scratch, ignore_errors=True)
            counts = {w: sorted(r) for w, r in ways.rows.items()}
            if len({tuple(r) for r in counts.values()}) != 1 or len(counts["project"]) != 1:
                raise RuntimeError(f"{k}x: the ways imported different row counts: {counts}")
            figures[k] = {"samples": samples, "rows": counts["local_parse"][0], "bytes": ways.resolved.total_bytes,
                          "monthly_bytes": ways.monthly_bytes, "files": len(ways.resolved.files),
                          "monthly_files": len(monthly), "path": path}
        h2o.remove_all()
    results = _results(figures, sizes, interval)
    plots.loglog({LABELS[w]: {figures[k]["rows"]: _seconds(figures[k], w) for k in sizes}
                  for w in ("project", "nodes_daily", "nodes_monthly", "raw_download", "parse_floor")},
                 "S3 import of a year of flights vs raw download and the parse floor", plot_path)
    return results


def _seconds(fig: dict[str, Any], way: str) -> float:
    s = fig["samples"]
    if way == "parse_floor":
        return float(median(s["raw_download"]) + median(s["local_parse"]))
    return float(median(s[way]))


def _results(figures: dict[int, dict[str, Any]], sizes: list[int], interval: tuple[date, date]) -> list[Result]:
    out: list[Result] = []
    days = (interval[1] - interval[0]).days
    note = ("a 2-node local cloud (2 x 3g, 1 thread each), local moto S3 server; the floor's two parts are measured "
            "apart and summed (medians)")
    for k in sizes:
        f = figures[k]
        floor = _seconds(f, "parse_floor")
        figs = {w: _seconds(f, w) for w in ("project", "nodes_daily", "nodes_monthly", "raw_download", "local_parse")}
        extra = {"k": k, "rows": f["rows"], "days": days,
                 "daily": {"files": f["files"], "bytes": f["bytes"]},
                 "monthly": {"files": f["monthly_files"], "bytes": f["monthly_bytes"]},
                 "project_path": f["path"], "seconds": figs, "parse_floor_s": round(floor, 3)}
        p = figs["project"]
        out.append(Result(
            name=f"scale_import_{k}x_vs_parse_floor",
            title=f"S3 import, {k}x ({f['rows']:,} rows, {days} days, {f['bytes'] / 2**20:.0f} MB) vs the parse floor",
            unit="s", project_label=f"the pipeline's S3 import ({f['path']})",
            baseline_label="raw download of the daily files to disk + H2O's parse of them from local disk",
            project=p, baseline=round(floor, 3), ratio=round(p / floor, 3),
            ratio_definition="project seconds / (download seconds + local parse seconds)",
            target=f"<= {FLOOR_TARGET}" if k == 16 else "informative (target at 16x)",
            met=p / floor <= FLOOR_TARGET if k == 16 else None, samples=f["samples"], extra=extra, notes=note))
        m = figs["nodes_monthly"]
        out.append(Result(
            name=f"scale_import_{k}x_monthly_vs_parse_floor",
            title=f"S3 import by the nodes of monthly files, {k}x vs the parse floor (daily files)", unit="s",
            project_label=f"the nodes import {f['monthly_files']} monthly files of the same rows",
            baseline_label="raw download of the daily files to disk + H2O's parse of them from local disk",
            project=m, baseline=round(floor, 3), ratio=round(m / floor, 3),
            ratio_definition="nodes' seconds / (download seconds + local parse seconds)",
            target="informative (no target)", met=None, samples=f["samples"], extra=extra, notes=note))
    return out

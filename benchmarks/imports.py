"""Import throughput: the S3 partitions and the Hive staging path.

S3: the project resolves the window's ``dt=`` partitions and imports them as the pipeline
does (:mod:`h2o_tasks.sources.s3`: up to ``client_fetch_max_bytes`` downloaded in threads and
uploaded as one file, the H2O nodes reading a bigger input themselves), against ``boto3``
listing and downloading the same objects into memory (8 threads, and serially). The nodes'
own import of the same window is timed too (informative row). Hive: the project's staging path (HiveServer2 writes
Parquet, the cluster imports it; :func:`h2o_tasks.ingest.import_interval`) against a
client-side fetch of the same query through pyhive into pandas.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import ROOT, Result, Stopwatch, interleaved, local_cloud, log, median
from benchmarks.stack import BUCKET, Stack
from h2o_tasks import config as pipeline_config
from h2o_tasks import ingest
from h2o_tasks.config import ClusterConfig, S3SourceConfig
from h2o_tasks.sources import hive as hive_source
from h2o_tasks.sources import s3 as s3_source

PIPELINE = ROOT / "dags" / "pipelines" / "arrival_delay.yaml"
WINDOWS = {"28 days": (date(2013, 1, 7), date(2013, 2, 4)), "365 days": (date(2013, 1, 1), date(2014, 1, 1))}


def s3_config(days: int, max_fetch_bytes: int | None = None) -> Any:
    """The example pipeline (S3 source), its training window ``days`` long."""
    raw = yaml.safe_load(PIPELINE.read_text())
    raw["source"]["training_window_days"] = days
    if max_fetch_bytes is not None:
        raw["source"]["s3"]["client_fetch_max_bytes"] = max_fetch_bytes
    return pipeline_config.parse(raw)


def s3_import(h2o: Any, cfg: Any, s3: Any, lo: date, hi: date) -> float:
    """The pipeline's S3 import of ``[lo, hi)`` (the columns it needs, as one frame)."""
    with Stopwatch() as sw:
        frame, _ = ingest.import_interval(h2o, cfg, "train", lo, hi, s3=s3)
    h2o.remove(frame)
    return sw.seconds


def boto3_download(client: Any, lo: date, hi: date, threads: int) -> float:
    src = S3SourceConfig(uri=f"s3://{BUCKET}/flights", format="parquet")

    def get(uri: str) -> int:
        bucket, key = uri[5:].split("/", 1)
        return len(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    with Stopwatch() as sw:
        files = s3_source.resolve(client, src, lo, hi).files
        with ThreadPoolExecutor(max_workers=threads) as pool:
            total = sum(pool.map(get, files))
    assert total > 0
    return sw.seconds


def hive_config(days: int) -> Any:
    """The example pipeline reading Hive, its training window ``days`` long."""
    raw = yaml.safe_load(PIPELINE.read_text())
    raw["source"] = {"kind": "hive", "training_window_days": days,
                     "hive": {"table": "flights", "partition_column": "dt", "database": "default"}}
    raw["scoring"].pop("hive_table", None)
    return pipeline_config.parse(raw)


def hive_import(h2o: Any, cfg: Any, conn: Any, lo: date, hi: date, staging: Path, paths: set[str]) -> float:
    """The project's Hive import; ``paths`` collects which way the rows came (client fetch or staged)."""
    with Stopwatch() as sw:
        frame, result = ingest.import_interval(h2o, cfg, "train", lo, hi, hive_conn=conn, staging_dir=staging)
    h2o.remove(frame)
    paths.add("client fetch + upload" if result.files == 0 else f"staged as {result.files} Parquet file(s)")
    return sw.seconds


def hive_client_fetch(cfg: Any, conn: Any, lo: date, hi: date) -> float:
    import pandas as pd

    sql = hive_source.build_query(cfg.source.hive, ingest.columns_needed(cfg, "train"), lo, hi)
    with Stopwatch() as sw:
        c = conn()
        try:
            cur = c.cursor()
            cur.execute(sql)
            rows = cur.fetchall()
            df = pd.DataFrame(rows, columns=[d[0].split(".")[-1] for d in cur.description])
        finally:
            c.close()
    assert len(df) > 0
    return sw.seconds


def run(reps: int, stack: Stack, state_dir: Path, windows: dict[str, tuple[date, date]] | None = None) -> list[Result]:
    windows = windows or WINDOWS
    client = stack.s3.client()
    out: list[Result] = []
    note = "a 2-node local cloud, 1g and 1 thread per node (the example pipeline's cluster), local moto S3 server"
    with local_cloud(state_dir, f"imports-{os.getpid()}", ClusterConfig(replicas=2, memory="1g", nthreads=1),
                     stack.s3) as h2o:

        first_cold: dict[str, float] = {}
        for label, (lo, hi) in windows.items():
            cfg, nodes_cfg = s3_config((hi - lo).days), s3_config((hi - lo).days, 0)
            max_fetch = cfg.source.s3.client_fetch_max_bytes
            if not first_cold:  # the cloud's very first import pays the JVMs' class loading and JIT warm-up
                first_cold[label] = round(s3_import(h2o, cfg, stack.s3, lo, hi), 3)
                log(f"  first import of the cloud ({label}, cold JVMs): {first_cold[label]:.1f}s")
            nbytes = s3_source.resolve(client, S3SourceConfig(uri=f"s3://{BUCKET}/flights"), lo, hi).total_bytes
            path = "downloaded and uploaded as one file" if 0 < nbytes <= max_fetch else "read by the nodes"
            log(f"  S3 import, {label} ({nbytes / 2**20:.1f} MB of Parquet, {path}), {reps} reps")
            samples = interleaved(reps, {
                "project": lambda c=cfg, lo=lo, hi=hi: s3_import(h2o, c, stack.s3, lo, hi),
                "nodes_read": lambda c=nodes_cfg, lo=lo, hi=hi: s3_import(h2o, c, stack.s3, lo, hi),
                "boto3_8_threads": lambda lo=lo, hi=hi: boto3_download(client, lo, hi, 8),
                "boto3_serial": lambda lo=lo, hi=hi: boto3_download(client, lo, hi, 1)}, log)
            p, b, n = median(samples["project"]), median(samples["boto3_8_threads"]), median(samples["nodes_read"])
            key = label.replace(" ", "_")
            out.append(Result(
                name=f"import_s3_{key}", title=f"S3 import, {label} of partitions", unit="s",
                project_label=f"the pipeline's S3 import ({path}; the {len(ingest.columns_needed(cfg, 'train'))} "
                              "columns it needs; list + fetch + parse)",
                baseline_label="boto3 lists and downloads the same objects (8 threads)", project=p, baseline=b,
                ratio=round(p / b, 3), ratio_definition="project seconds / boto3 seconds", target="<= 1.5",
                met=p / b <= 1.5, samples=samples,
                extra={"bytes": nbytes, "path": path, "client_fetch_max_bytes": max_fetch,
                       "boto3_serial_s": median(samples["boto3_serial"]), "nodes_read_s": n,
                       "project_mb_per_s": round(nbytes / 2**20 / p, 2),
                       "first_import_of_the_cloud_s": first_cold.get(label)},
                notes=note + ("; the cloud's first import (cold JVMs) is reported apart in extra" if label in first_cold
                              else "")))
            out.append(Result(
                name=f"import_s3_nodes_read_{key}", title=f"S3 import by the nodes, {label} (client_fetch_max_bytes 0)",
                unit="s", project_label="the H2O nodes import and parse every object, then the needed columns are kept",
                baseline_label="boto3 lists and downloads the same objects (8 threads)", project=n, baseline=b,
                ratio=round(n / b, 3), ratio_definition="nodes' seconds / boto3 seconds",
                target="informative (no target)", met=None, samples=samples,
                notes=note + "; the path for inputs above client_fetch_max_bytes; ~10 ms per object in H2O's import"))
        staging = Path(tempfile.gettempdir()) / f"h2o-bench-staging-{os.getpid()}"
        for label, (lo, hi) in windows.items() if stack.hive is not None else ():
            cfg = hive_config((hi - lo).days)
            log(f"  Hive import, {label}, {reps} reps")
            paths: set[str] = set()
            try:
                samples = interleaved(reps, {
                    "project": lambda c=cfg, lo=lo, hi=hi, ps=paths: hive_import(h2o, c, stack.hive.connect, lo, hi,
                                                                                   staging, ps),
                    "client_fetch": lambda c=cfg, lo=lo, hi=hi: hive_client_fetch(c, stack.hive.connect, lo, hi)}, log)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            p, b = median(samples["project"]), median(samples["client_fetch"])
            out.append(Result(
                name=f"import_hive_{label.replace(' ', '_')}", title=f"Hive import, {label} of flights", unit="s",
                project_label=f"the pipeline's Hive import ({', '.join(sorted(paths))}; incl. table check)",
                baseline_label="pyhive fetches the same query into pandas", project=p, baseline=b,
                ratio=round(p / b, 3), ratio_definition="project seconds / client fetch seconds", target="<= 1.5",
                met=p / b <= 1.5, samples=samples,
                extra={"path": sorted(paths), "client_fetch_max_rows": cfg.source.hive.client_fetch_max_rows},
                notes=note + "; HiveServer2 = Spark Thrift Server, local[2]; results up to client_fetch_max_rows "
                             "rows are fetched (one query with LIMIT max+1) and uploaded, bigger ones staged"))
        h2o.remove_all()
    return out

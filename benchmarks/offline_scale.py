"""The offline scoring task at scale: end to end (S3 Parquet in, committed predictions out) as data grows.

Data: the real 2013 flights with each day's rows repeated ``k`` times under new flight ids
(``flight + i * 10000``), for ``k`` in :data:`SIZES` (0.34M, 1.3M and 5.4M rows over the same
365 days, so every window stays valid), each day's rows in a seeded random order (copies one
after another would compress to almost nothing: Parquet stores long runs for free). Built at run time and cached outside the repository
(``$H2O_AIRFLOW_CACHE/bench-scale/flights-<k>x``), uploaded to the benchmark's S3 server under
``bench-scale-<k>x/``.

One champion (trained and promoted as :mod:`benchmarks.engines` does) scores the interval at each
size, three ways, each in a process of its own so that its peak memory is its own:

- project: :func:`h2o_tasks.scoring.score_offline` (``scoring.engine: offline``), every day
  committed as its partition;
- scorer alone: :func:`h2o_tasks.mojo_csv.predict_csv` on a local CSV of the same rows (the
  features as the task writes them), both threads, no S3, no commit;
- the user's ``PredictCsv`` workflow: download the day files, convert them to one CSV with pandas,
  one ``PredictCsv`` JVM (``h2o.mojo_predict_csv``'s command), upload its output.

Reported per size: rows per second of each, and the peak resident memory of the task process
and of the scorer JVM apart (each one's ``VmHWM``; the JVM's read every 100 ms while it runs). Ratios: the task
against the scorer alone (target >= 0.8) and against the workflow (>= 2.5); the task's peak memory
at the largest size against the smallest (<= 1.2). The series (seconds against rows) is plotted
log-log to ``scale_offline.png``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Result, log, median
from benchmarks.engines import Steps
from benchmarks.memory import cpu_seconds, hwm_kib, rss_kib
from benchmarks.stack import BUCKET, Stack

SIZES = (1, 4, 16)
FLIGHT_STRIDE = 10_000  # flight numbers are below it: repeat i of a row gets flight + i * stride
FULL_INTERVAL = (date(2013, 1, 1), date(2014, 1, 1))
QUICK_INTERVAL = (date(2013, 2, 4), date(2013, 3, 4))  # 28 days
PLOT = ROOT / "benchmarks" / "scale_offline.png"
WAYS = ("project", "scorer_alone", "predictcsv_workflow")


def scaled_dir(k: int) -> Path:
    from h2o_tasks.cache import cache_dir

    return cache_dir() / "bench-scale" / f"flights-{k}x"


def build(data_dir: Path, k: int) -> Path:
    """The flights with every day's rows ``k`` times (new flight ids), one Parquet file a day; cached."""
    import shutil

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from devtools.stack.seed import flight_partitions

    out = scaled_dir(k)
    sources = flight_partitions(data_dir)
    marker = f"{k}x {len(sources)} days, shuffled"
    if (out / "_COMPLETE").exists() and (out / "_COMPLETE").read_text() == marker:
        return out
    tmp = out.with_name(f"{out.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for path in sources:
        table = pq.read_table(path)
        i = table.schema.get_field_index("flight")
        flight = table.column(i)
        copies = [table.set_column(i, "flight", pc.add(flight, pa.scalar(r * FLIGHT_STRIDE, flight.type)))
                  for r in range(k)]
        day = pa.concat_tables(copies)
        if k > 1:  # copies one after another would be long runs that Parquet's encodings store almost for free
            day = day.take(np.random.default_rng(int(path.parent.name[3:].replace("-", ""))).permutation(len(day)))
        target = tmp / "flights" / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(day, target)
    (tmp / "_COMPLETE").write_text(marker)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def upload(st: Stack, directory: Path, prefix: str) -> int:
    """Every day file under ``s3://BUCKET/prefix/dt=.../part-0.parquet``; the number of files."""
    from devtools.stack.seed import flight_partitions

    client = st.s3.client()
    files = flight_partitions(directory)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), BUCKET, f"{prefix}/{p.parent.name}/{p.name}"), files))
    return len(files)


def scaled_config(cfg: Any, k: int) -> Any:
    """``cfg`` reading the ``k`` times partitions, writing under its own output prefix."""
    import dataclasses

    source = dataclasses.replace(cfg.source, s3=dataclasses.replace(cfg.source.s3, uri=f"s3://{BUCKET}/bench-scale-{k}x"))
    scoring = dataclasses.replace(cfg.scoring, output_uri=f"s3://{BUCKET}/bench-scale-predictions-{k}x")
    return dataclasses.replace(cfg, source=source, scoring=scoring)


# --------------------------------------------------------------------------- the measured processes

def _child(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement, in this process: seconds and rows, this process's peak RSS and its child JVMs'.

    Peaks are each process's own ``VmHWM`` (its address space's high-water mark): ``ru_maxrss``
    would carry the parent's resident size across ``fork`` and ``exec`` into every child.
    """
    import threading

    peaks: dict[int, int] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.1):
            for pid in _descendants(os.getpid()):
                peaks[pid] = max(peaks.get(pid, 0), hwm_kib(pid))
            rss = rss_kib(os.getpid()) / 1024
            try:
                arrow = sys.modules["pyarrow"].total_allocated_bytes() / 2**20
            except (KeyError, AttributeError):
                arrow = 0
            for label in [k for k, n in STEPS_RUNNING.active.items() if n] or ["other"]:
                RSS_BY_STEP[label] = max(RSS_BY_STEP.get(label, 0.0), round(rss))
                ARROW_BY_STEP[label] = max(ARROW_BY_STEP.get(label, 0.0), round(arrow))

    server = job.get("s3_pid")
    server_cpu = cpu_seconds(server) if server else 0.0
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        rows = {"project": _project, "scorer_alone": _scorer_alone, "predictcsv_workflow": _workflow}[job["way"]](job)
    finally:
        stop.set()
        watcher.join()
    seconds = time.monotonic() - t0
    own = os.times()
    cpu = {"task": round(own.user + own.system, 1), "child processes": round(own.children_user + own.children_system, 1)}
    if server:
        cpu["S3 server"] = round(cpu_seconds(server) - server_cpu, 1)
    return {"seconds": seconds, "rows": rows, "task_rss_mib": hwm_kib(os.getpid()) / 1024,
            "jvm_rss_mib": max(peaks.values(), default=0) / 1024, "steps": STEPS, "cpu_s": cpu,
            "rss_by_step": RSS_BY_STEP, "arrow_by_step": ARROW_BY_STEP}


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` now (from ``/proc/<pid>/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def _settings(job: dict[str, Any]) -> Any:
    from h2o_tasks.s3 import S3Settings

    return S3Settings(**job["s3"])


STEPS: dict[str, float] = {}  # the project's seconds per step (the functions score_offline calls)
STEPS_RUNNING = Steps()
RSS_BY_STEP: dict[str, float] = {}  # the task's largest resident size (MiB) seen while each step ran
ARROW_BY_STEP: dict[str, float] = {}  # of it, the most Arrow's memory pool held (MiB)


def _project(job: dict[str, Any]) -> int:
    import yaml

    from h2o_tasks import config, mojo_csv, offline_stream, predictions, scoring

    cfg = config.parse(yaml.safe_load(job["pipeline"]))
    start, end = (date.fromisoformat(d) for d in job["interval"])
    steps = STEPS_RUNNING
    targets = [(offline_stream, "download", "download"), (offline_stream, "write_scorer_input", "write input CSV"),
               (mojo_csv, "predict_csv", "scorer JVM"), (offline_stream, "join_period", "join + write part"),
               (predictions, "upload_parts", "upload part"), (predictions, "publish", "commit")]
    with steps.patched(targets):
        result = scoring.score_offline(cfg, _settings(job), start, end, run_id=job["run_id"], workers=2)
    STEPS.update({k: round(v, 2) for k, v in steps.seconds.items()})
    return int(result.rows_in)


def _scorer_alone(job: dict[str, Any]) -> int:
    from h2o_tasks import mojo_csv

    out = Path(job["work"]) / "alone-out.csv"
    mojo_csv.predict_csv(mojo_csv.genmodel_jar(), Path(job["model"]), Path(job["csv"]), out, workers=2)
    out.unlink()
    return int(job["rows"])


def _workflow(job: dict[str, Any]) -> int:
    """What a user does without the project: download, pandas to CSV, PredictCsv, upload."""
    import shutil

    import pandas as pd

    from h2o_tasks import mojo_csv

    client, work = _settings(job).client(), Path(job["work"]) / "workflow"
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    start, end = (date.fromisoformat(d) for d in job["interval"])
    keys = [f"{job['prefix']}/dt={start + timedelta(days=i)}/part-0.parquet" for i in range((end - start).days)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kv: client.download_file(BUCKET, kv[1], str(work / "in" / f"{kv[0]:04d}.parquet")),
                      enumerate(keys)))
    df = pd.concat([pd.read_parquet(p) for p in sorted((work / "in").iterdir())], ignore_index=True)
    df.to_csv(work / "input.csv", index=False)
    rows = len(df)
    del df
    mojo_csv.genmodel_predict(mojo_csv.genmodel_jar(), Path(job["model"]), work / "input.csv", work / "output.csv")
    client.upload_file(str(work / "output.csv"), BUCKET, f"bench-scale-workflow/{job['run_id']}/predictions.csv")
    shutil.rmtree(work, ignore_errors=True)
    return rows


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` in a new Python process; its figures."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.offline_scale"], input=json.dumps(job), text=True,
                          capture_output=True, env=env, cwd=ROOT, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{job['way']} at {job['k']}x failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the benchmark

def _features_csv(cfg: Any, st: Stack, metadata: dict[str, Any], interval: tuple[date, date], out: Path) -> int:
    """The interval's rows as the scorer's input CSV, written the way the task writes it."""
    from h2o_tasks import intervals, scoring

    periods = intervals.periods("day", interval[0], interval[1])
    rows = 0
    with out.open("w", newline="") as f:
        for i, (_, table) in enumerate(scoring._read_periods(st.s3.client(), cfg, periods).items()):
            feats, _ = scoring.scoring_input(table.to_pandas(), metadata["features"], "bench")
            feats.to_csv(f, index=False, header=i == 0, na_rep="")
            rows += table.num_rows
    return rows


def run(reps: int, st: Stack, work: Path, state_dir: Path, max_scale: int, quick: bool,
        plot_path: Path = PLOT) -> list[Result]:
    """Every size up to ``max_scale``, ``reps`` repetitions interleaved; the plot to ``plot_path``."""
    import yaml

    from benchmarks import engines
    from h2o_tasks import scoring

    work.mkdir(parents=True, exist_ok=True)
    interval = QUICK_INTERVAL if quick else FULL_INTERVAL
    sizes = [k for k in SIZES if k <= max_scale] or [1]
    cfg, _ = engines.configs()
    champion = engines.train_champion(st, state_dir, cfg)
    champ = scoring.champion(st.s3.client(), cfg)
    model = scoring.fetch_model(st.s3.client(), champ, work)
    figures: dict[int, dict[str, dict[str, list[float]]]] = {}
    rows_at: dict[int, int] = {}
    for k in sizes:
        t0 = time.monotonic()
        directory = build(st.data_dir, k)
        files = upload(st, directory, f"bench-scale-{k}x")
        kcfg = scaled_config(cfg, k)
        csv_path = work / f"features-{k}x.csv"
        rows_at[k] = _features_csv(kcfg, st, champ.metadata, interval, csv_path)
        log(f"  {k}x: {files} day files, {rows_at[k]:,} rows in [{interval[0]}, {interval[1]}) "
            f"({time.monotonic() - t0:.0f}s to build, upload and write the scorer's CSV)")
        raw = yaml.safe_dump(_raw_pipeline(kcfg))
        base = {"k": k, "s3": _s3_dict(st.s3), "interval": [d.isoformat() for d in interval], "model": str(model),
                "work": str(work), "csv": str(csv_path), "rows": rows_at[k], "pipeline": raw,
                "prefix": f"bench-scale-{k}x", "s3_pid": st.s3_pid}
        figures[k] = {w: {"seconds": [], "rows_per_s": [], "task_rss_mib": [], "jvm_rss_mib": []} for w in WAYS}
        for rep in range(reps):
            order = WAYS[rep % len(WAYS):] + WAYS[:rep % len(WAYS)]
            for way in order:
                got = measure({**base, "way": way, "run_id": f"bench_scale_{uuid.uuid4().hex[:8]}"})
                if got["rows"] != rows_at[k]:
                    raise RuntimeError(f"{way} at {k}x scored {got['rows']} rows, not {rows_at[k]}")
                f = figures[k][way]
                f["seconds"].append(round(got["seconds"], 3))
                f["rows_per_s"].append(round(got["rows"] / got["seconds"]))
                f["task_rss_mib"].append(round(got["task_rss_mib"]))
                f["jvm_rss_mib"].append(round(got["jvm_rss_mib"]))
                f.setdefault("cpu_s", []).append(got["cpu_s"])
                if got.get("steps"):
                    f.setdefault("steps", []).append(got["steps"])
                    f.setdefault("rss_by_step", []).append(got["rss_by_step"])
                    f.setdefault("arrow_by_step", []).append(got["arrow_by_step"])
                log(f"    rep {rep + 1}/{reps} {k}x {way}: {got['seconds']:.1f}s, {got['rows'] / got['seconds']:,.0f} "
                    f"rows/s, task {got['task_rss_mib']:.0f} MiB, JVM {got['jvm_rss_mib']:.0f} MiB; CPU s {got['cpu_s']}"
                    + (f"; steps {got['steps']}; task MiB by step {got['rss_by_step']}, of it Arrow's "
                       f"{got['arrow_by_step']}" if got.get("steps") else ""))
        csv_path.unlink()
    results = _results(figures, rows_at, sizes, interval, champion)
    plot(figures, rows_at, plot_path)
    return results


def _raw_pipeline(cfg: Any) -> dict[str, Any]:
    """The pipeline file's mapping of ``cfg`` (as :func:`benchmarks.engines.configs` built it)."""
    import yaml

    raw = yaml.safe_load(engines_pipeline().read_text())
    raw["registry_uri"] = cfg.registry_uri
    raw["source"]["s3"]["uri"] = cfg.source.s3.uri
    raw["scoring"].pop("hive_table", None)
    raw["scoring"].update(engine="offline", after_training=False, output_uri=cfg.scoring.output_uri)
    return raw


def engines_pipeline() -> Path:
    from benchmarks import engines

    return engines.PIPELINE


def _s3_dict(s3: Any) -> dict[str, Any]:
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(s3).items() if k != "expires_at"}


def _med(figures: dict[str, list[float]], key: str) -> float:
    return float(median(figures[key]) or 0.0)


def _results(figures: dict[int, dict[str, dict[str, list[float]]]], rows_at: dict[int, int], sizes: list[int],
             interval: tuple[date, date], champion: dict[str, Any]) -> list[Result]:
    out: list[Result] = []
    days = (interval[1] - interval[0]).days
    for k in sizes:
        f = figures[k]
        task = _med(f["project"], "rows_per_s")
        for way, target, floor in (("scorer_alone", ">= 0.8", 0.8), ("predictcsv_workflow", ">= 2.5", 2.5)):
            base = _med(f[way], "rows_per_s")
            ratio = round(task / base, 3) if base else None
            label = {"scorer_alone": "the scorer alone on a local CSV of the same rows (2 threads, no S3, no commit)",
                     "predictcsv_workflow": "download, pandas to CSV, PredictCsv (1 JVM), upload"}[way]
            out.append(Result(
                name=f"offline_scale_{k}x_vs_{way}",
                title=f"Offline scoring task end to end, {k}x ({rows_at[k]:,} rows, {days} days) vs {way.replace('_', ' ')}",
                unit="rows/s", project_label="score_offline: S3 Parquet in, every day committed",
                baseline_label=label, project=task, baseline=base, ratio=ratio,
                ratio_definition="task rows/s / baseline rows/s", target=target,
                met=None if ratio is None else ratio >= floor, samples={w: f[w]["rows_per_s"] for w in WAYS},
                extra={"k": k, "rows": rows_at[k], "interval": [d.isoformat() for d in interval], "champion": champion,
                       "figures": f}))
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        small, big = _med(figures[lo]["project"], "task_rss_mib"), _med(figures[hi]["project"], "task_rss_mib")
        ratio = round(big / small, 3) if small else None
        out.append(Result(
            name="offline_scale_task_memory", unit="MiB",
            title=f"Offline scoring task peak memory, {hi}x ({rows_at[hi]:,} rows) vs {lo}x ({rows_at[lo]:,} rows)",
            project_label=f"peak RSS of the task process at {hi}x", baseline_label=f"the same at {lo}x",
            project=big, baseline=small, ratio=ratio, ratio_definition=f"task peak RSS at {hi}x / at {lo}x",
            target="<= 1.2", met=None if ratio is None else ratio <= 1.2,
            extra={"task_rss_mib": {k: figures[k]["project"]["task_rss_mib"] for k in sizes},
                   "jvm_rss_mib": {k: figures[k]["project"]["jvm_rss_mib"] for k in sizes}}))
    return out


def plot(figures: dict[int, dict[str, dict[str, list[float]]]], rows_at: dict[int, int], path: Path) -> Path:
    """Seconds against rows, log-log: the task and its two baselines."""
    from benchmarks.plots import loglog

    series = {way.replace("_", " "): {rows_at[k]: _med(figures[k][way], "seconds") for k in figures} for way in WAYS}
    return loglog(series, "Offline scoring task end to end vs its baselines", path, "rows scored")


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.stdin.read()))))

"""Scoring engines side by side: the Hive engine against the offline scorer and in-cluster scoring.

One champion (the example pipeline's algorithms and features, trained on 28 days of flights on a
local cloud by the engine's own import and training, exported and promoted by
:func:`h2o_tasks.artifacts.export_and_promote`) scores the same 365 days of 2013 (336,776
rows) end to end with each engine, every day committed to S3 as its own partition (no Hive
output: the commit is the same work for the three):

- hive: :func:`h2o_tasks.scoring.score_in_hive` on the Hive table ``flights`` (HiveServer2 runs
  the ``h2o_predict`` UDF and stages the result as Parquet, the task reads it back and commits);
- offline: :func:`h2o_tasks.scoring.score_offline` on the S3 partitions (the MOJO, one JVM, no
  cluster);
- cluster: the scoring DAG's work without Airflow: size and create a local cluster with the
  pipeline's settings, wait until it is ready, import each day as a frame
  (:func:`h2o_tasks.ingest.import_periods`), :func:`h2o_tasks.scoring.score_in_cluster`, delete it.

Repetitions interleaved, each with a new run id (a new attempt of every partition). The time of
each step (queries in HiveServer2, reading the staged output, the commit, ...) is taken by
wrapping the functions the engines call and reported in ``extra``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import ROOT, Result, Stopwatch, interleaved, local_cloud, log, median
from benchmarks.stack import BUCKET, Stack
from h2o_tasks import config as pipeline_config
from h2o_tasks import intervals, s3

PIPELINE = ROOT / "dags" / "pipelines" / "arrival_delay.yaml"
PREFIX = f"s3://{BUCKET}/bench-engines"
TRAIN_INTERVAL = (date(2013, 1, 28), date(2013, 2, 4))  # the window: the 28 days before its end (as imports.py)
FULL_WINDOW = (date(2013, 1, 1), date(2014, 1, 1))
QUICK_WINDOW = (date(2013, 2, 4), date(2013, 3, 4))  # 28 days
DAG_ID = "h2o_score__bench-engines"
POLL_S = 0.5  # H2OCreateClusterOperator's default readiness poll
TARGET = 1.5


def configs() -> tuple[Any, Any]:
    """The example pipeline reading S3 (offline and cluster engines) and reading the Hive table
    ``flights`` (hive engine): one registry, an output prefix per engine, no Hive output."""
    raw = yaml.safe_load(PIPELINE.read_text())
    raw["registry_uri"] = f"{PREFIX}/models"
    raw["scoring"].pop("hive_table", None)
    raw["scoring"]["after_training"] = False
    s3_raw = {**raw, "scoring": {**raw["scoring"], "engine": "offline", "output_uri": f"{PREFIX}/predictions"}}
    hive_raw = {**raw, "source": {"kind": "hive", "training_window_days": raw["source"]["training_window_days"],
                                  "hive": {"table": "flights", "partition_column": "dt", "database": "default"}},
                "scoring": {**raw["scoring"], "engine": "hive", "output_uri": f"{PREFIX}/predictions-hive"}}
    return pipeline_config.parse(s3_raw), pipeline_config.parse(hive_raw)


def output_of(cfg: Any, engine: str) -> Any:
    """``cfg`` writing under its engine's own output prefix."""
    import dataclasses

    return dataclasses.replace(cfg, scoring=dataclasses.replace(cfg.scoring, output_uri=f"{PREFIX}/predictions-{engine}"))


def train_champion(st: Stack, state_dir: Path, cfg: Any) -> dict[str, Any]:
    """Import the training window, train, export and promote, as the training DAG's tasks do."""
    from h2o_tasks import artifacts, ingest, train

    run_id = f"bench_engines_train_{uuid.uuid4().hex[:8]}"
    with local_cloud(state_dir, run_id, cfg.cluster, st.s3) as h2o:
        t0 = time.monotonic()
        prepared = ingest.import_training(h2o, cfg, *TRAIN_INTERVAL, s3=st.s3)
        trained = train.train(h2o.get_frame(prepared["frame_id"]), None, cfg, run_id=run_id)
        outcome = artifacts.export_and_promote(
            h2o, h2o.get_model(trained.best_model_id), cfg, st.s3.client(), run_id=run_id,
            logical_date=datetime(*TRAIN_INTERVAL[1].timetuple()[:3], tzinfo=UTC), interval=TRAIN_INTERVAL,
            lineage={k: prepared[k] for k in ("source", "start", "end", "rows")}, training=trained.to_dict())
        seconds = time.monotonic() - t0
    out = outcome.to_dict()
    if not out["promoted"]:
        raise RuntimeError(f"the champion was not promoted: {out['reason']}")
    log(f"  champion {out['version']}: {trained.best_algo}, {cfg.training.metric} {trained.best_metric_value:.3f}, "
        f"{prepared['rows']} training rows [{prepared['start']}, {prepared['end']}) ({seconds:.0f}s)")
    return {"version": out["version"], "algo": trained.best_algo, "metric": cfg.training.metric,
            "metric_value": round(trained.best_metric_value, 4), "training_rows": prepared["rows"],
            "training_window": [prepared["start"], prepared["end"]]}


# --------------------------------------------------------------------------- step timing

class Steps:
    """Seconds and calls per step of one engine run, taken by wrapping the functions the engine calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.active: dict[str, int] = {}  # steps running now (in any thread), for a sampler to tag what it sees

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds
        self.calls[label] = self.calls.get(label, 0) + 1

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        t0 = time.monotonic()
        self.active[label] = self.active.get(label, 0) + 1
        try:
            yield
        finally:
            self.active[label] -= 1
            self.add(label, time.monotonic() - t0)

    def wrap(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.step(label):
                return fn(*args, **kwargs)

        return timed

    @contextlib.contextmanager
    def patched(self, targets: list[tuple[Any, str, str]]) -> Iterator[Steps]:
        """``(module, function name, label)``: each function timed under its label while in the block
        (a name the engine no longer has is left alone)."""
        saved = []
        try:
            for obj, attr, label in targets:
                if callable(getattr(obj, attr, None)):
                    saved.append((obj, attr, getattr(obj, attr)))
                    setattr(obj, attr, self.wrap(getattr(obj, attr), label))
            yield self
        finally:
            for obj, attr, fn in reversed(saved):
                setattr(obj, attr, fn)

    def connector(self, connect: Callable[[], Any]) -> Callable[[], Any]:
        """A HiveServer2 connection factory whose cursors time every statement by kind and every fetch."""
        return lambda: _Timed(connect(), self)

    def summary(self, total: float) -> dict[str, float]:
        out = {k: round(v, 3) for k, v in sorted(self.seconds.items())}
        out["other"] = round(total - sum(v for k, v in self.seconds.items() if not k.startswith("(")), 3)
        out["total"] = round(total, 3)
        return out


def query_kind(sql: str) -> str:
    s = " ".join(sql.split()).upper()
    if s.startswith("INSERT OVERWRITE DIRECTORY"):
        return "hive: scoring query, staged"
    if s.startswith(("ADD JAR", "CREATE TEMPORARY FUNCTION")):
        return "hive: UDF registration"
    if s.startswith(("SHOW", "DESCRIBE")):
        return "hive: table check"
    if "COUNT(" in s:
        return "hive: count query"
    return "hive: other query"


class _Timed:
    """A DB-API connection or cursor whose ``execute`` and ``fetch*`` are timed."""

    def __init__(self, inner: Any, steps: Steps) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_steps", steps)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return _Timed(self._inner.cursor(*args, **kwargs), self._steps)

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        with self._steps.step(query_kind(sql)):
            return self._inner.execute(sql, *args, **kwargs)

    def _fetch(self, name: str, *args: Any) -> Any:
        with self._steps.step("hive: fetch"):
            return getattr(self._inner, name)(*args)

    def fetchone(self) -> Any:
        return self._fetch("fetchone")

    def fetchall(self) -> Any:
        return self._fetch("fetchall")

    def fetchmany(self, *args: Any) -> Any:
        return self._fetch("fetchmany", *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


def commit_targets() -> list[tuple[Any, str, str]]:
    from h2o_tasks import predictions

    return [(predictions, "upload_parts", "commit: upload"), (predictions, "publish", "commit: publish")]


# --------------------------------------------------------------------------- the three engines

class Bench:
    """What the three measurements share, and what each run recorded."""

    def __init__(self, st: Stack, workdir: Path, state_dir: Path, cfg_s3: Any, cfg_hive: Any,
                 window: tuple[date, date]) -> None:
        self.st, self.workdir, self.state_dir = st, workdir, state_dir
        self.cfg = {"hive": cfg_hive, "offline": output_of(cfg_s3, "offline"), "cluster": output_of(cfg_s3, "cluster")}
        self.window = window
        self.periods = intervals.periods("day", *window)
        self.stage = workdir / "hive-stage"
        self.stage.mkdir(parents=True, exist_ok=True)
        self.runs: dict[str, list[dict[str, Any]]] = {"hive": [], "offline": [], "cluster": []}

    def run_id(self, engine: str) -> str:
        return f"bench_engines__{engine}_{len(self.runs[engine]) + 1}_{uuid.uuid4().hex[:8]}"

    def record(self, engine: str, result: Any, seconds: float, steps: Steps) -> float:
        if result.rows_scored != result.rows_in:
            raise AssertionError(f"{engine}: {result.rows_scored} rows scored of {result.rows_in}")
        if len(result.partitions) != len(self.periods):
            raise AssertionError(f"{engine}: {len(result.partitions)} partitions committed, {len(self.periods)} days")
        self.runs[engine].append({"seconds": seconds, "rows_in": result.rows_in, "engine_seconds": result.seconds,
                                  "steps": steps.summary(seconds), "calls": dict(steps.calls)})
        return seconds

    def hive(self, periods: list[intervals.Period] | None = None) -> tuple[Any, float, Steps]:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        from h2o_tasks import hive_udf, scoring

        steps = Steps()
        targets = [(scoring, "fetch_model", "model: fetch + digest"), (hive_udf, "build", "model: UDF jar"),
                   (pq, "read_table", "read staged Parquet"), (scoring, "_by_period", "split staged rows by period"),
                   (pcsv, "write_csv", "write CSV part"), *commit_targets()]
        with steps.patched(targets), Stopwatch() as sw:
            result = scoring.score_in_hive(self.cfg["hive"], self.st.s3, periods or self.periods,
                                           run_id=self.run_id("hive"), hive_conn=steps.connector(self.st.hive.connect),
                                           stage_root=self.stage, hive=None)
        return result, sw.seconds, steps

    def offline(self, periods: list[intervals.Period] | None = None) -> tuple[Any, float, Steps]:
        from h2o_tasks import mojo_csv, offline_stream, scoring

        periods = periods or self.periods
        steps = Steps()
        targets = [(scoring, "fetch_model", "model: fetch + digest"), (offline_stream, "download", "download S3 partitions"),
                   (offline_stream, "write_scorer_input", "write the scorer's CSV"),
                   (mojo_csv, "predict_csv", "predict (MOJO JVM)"), (offline_stream, "join_period", "join + write CSV part"),
                   *commit_targets()]
        with steps.patched(targets), Stopwatch() as sw:
            result = scoring.score_offline(self.cfg["offline"], self.st.s3, periods[0].day,
                                           periods[-1].day + timedelta(days=1), run_id=self.run_id("offline"),
                                           periods=periods)
        return result, sw.seconds, steps

    def cluster(self) -> tuple[Any, float, Steps]:
        """The scoring DAG's tasks: create (sizing check, create, wait), import the days, score + commit, delete."""
        from h2o_tasks import ingest, scoring, sizing
        from h2o_tasks.cluster.base import ClusterSpec
        from h2o_tasks.cluster.local import LocalBackend
        from h2o_tasks.session import connect
        from h2o_tasks.sources import s3 as s3_source

        cfg, steps, run_id = self.cfg["cluster"], Steps(), self.run_id("cluster")
        client = self.st.s3.client()
        backend = LocalBackend(state_dir=self.state_dir, s3_endpoint=self.st.s3.endpoint_url)
        info = None
        with Stopwatch() as sw:
            try:
                with steps.step("cluster: sizing check"):
                    resolved = s3_source.resolve(client, cfg.source.s3, *self.window, all_required=True)
                    sizing.check(cfg.cluster, resolved.total_bytes, cfg.source.s3.format)
                with steps.step("cluster: create"):
                    info = backend.create(ClusterSpec.for_run(cfg.name, DAG_ID, run_id, cfg.cluster,
                                                              s3_endpoint=self.st.s3.endpoint_url))
                with steps.step("cluster: wait until ready"):
                    backend.wait_ready(info, cfg.cluster.ready_timeout_s, POLL_S)
                with steps.step("cluster: connect"):
                    connect(backend.endpoint(info), self.st.s3, login=backend.login(info))
                    import h2o
                with steps.step("import days"):
                    imported = ingest.import_periods(h2o, cfg, self.periods, s3=self.st.s3)
                with steps.step("look up frames"):
                    frames = [(intervals.Period.parse(r.period or r.start), h2o.get_frame(r.frame_id))
                              for r in imported.days]
                with (steps.patched([(h2o, "export_file", "export predictions (cluster)"), *commit_targets()]),
                      steps.step("(score_in_cluster)"), warnings.catch_warnings()):
                    warnings.filterwarnings("ignore", "Test/Validation dataset column")  # unseen levels: counted
                    result = scoring.score_in_cluster(h2o, frames, cfg, client, run_id=run_id)
            finally:
                with contextlib.suppress(Exception):
                    import h2o

                    h2o.connection().close()
                if info is not None:
                    with steps.step("cluster: delete"):
                        backend.delete(info)
        return result, sw.seconds, steps

    def measure(self, engine: str) -> float:
        result, seconds, steps = getattr(self, engine)()
        if engine == "cluster":  # score_in_cluster's own remainder: predict, checks, model upload
            inner = steps.seconds.pop("(score_in_cluster)")
            steps.seconds["score (predict, checks)"] = inner - sum(
                v for k, v in steps.seconds.items() if k.startswith(("commit", "export predictions")))
            steps.calls.pop("(score_in_cluster)")
        return self.record(engine, result, seconds, steps)


def expected_rows(data_dir: Path, window: tuple[date, date]) -> int:
    """The seeded flights of the window (from the Parquet footers)."""
    import pyarrow.parquet as pq

    from devtools.stack import seed

    lo, hi = (d.isoformat() for d in window)
    files = [f for f in seed.flight_partitions(data_dir) if lo <= f.parent.name.removeprefix("dt=") < hi]
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _median_steps(runs: list[dict[str, Any]]) -> dict[str, float]:
    labels = dict.fromkeys(k for r in runs for k in r["steps"])
    return {k: median([r["steps"].get(k, 0.0) for r in runs]) for k in labels}


def run(reps: int, st: Stack, workdir: Path, state_dir: Path, window: tuple[date, date] | None = None) -> list[Result]:
    """Train the champion, warm up, then time the three engines ``reps`` times, interleaved."""
    from h2o_tasks import hive_udf, mojo_csv

    if st.hive is None:
        raise RuntimeError("the engines benchmark needs HiveServer2 (stack.running(with_hive=True))")
    window = window or FULL_WINDOW
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_s3, cfg_hive = configs()
    days = (window[1] - window[0]).days
    rows = expected_rows(st.data_dir, window)
    import h2o

    h2o.no_progress()  # the bars of 365 imports, predictions and exports; the jobs are polled as before
    try:
        log("  training the champion (28 days, local cloud, the pipeline's cluster)")
        champ = train_champion(st, state_dir, cfg_s3)
        bench = Bench(st, workdir, state_dir, cfg_s3, cfg_hive, window)
        # built once (cached by their sources), as a deployed scorer has them: the UDF jar and the
        # offline scorer's launcher; one day through each scorer warms HiveServer2 (a long-running server)
        hive_udf.build()
        mojo_csv.launcher_classpath(mojo_csv.genmodel_jar())
        warm = {}
        for engine in ("hive", "offline"):
            _, seconds, _ = getattr(bench, engine)(bench.periods[:1])
            warm[engine] = round(seconds, 2)
        log(f"  warm-up, one day: {warm}")
        log(f"  {days} days ({rows} rows), {reps} reps: hive, offline, cluster")
        samples = interleaved(reps, {e: functools.partial(bench.measure, e) for e in ("hive", "offline", "cluster")}, log)
    finally:
        with contextlib.suppress(Exception):
            s3.delete_prefix(st.s3.client(), PREFIX)
        shutil.rmtree(workdir / "hive-stage", ignore_errors=True)
    counts = {e: sorted({r["rows_in"] for r in runs}) for e, runs in bench.runs.items()}
    if any(c != [rows] for c in counts.values()):
        raise AssertionError(f"rows scored differ: {counts}, the seeded flights of the window: {rows}")
    h, o, c = (median(samples[e]) for e in ("hive", "offline", "cluster"))
    steps = {e: _median_steps(runs) for e, runs in bench.runs.items()}
    for e, s in steps.items():
        log(f"  {e} steps (median s): {s}")
    calls = {e: runs[-1]["calls"] for e, runs in bench.runs.items()}
    extra = {"rows": rows, "days": days, "window": [window[0].isoformat(), window[1].isoformat()],
             "seconds": {"hive": h, "offline": o, "cluster": c}, "steps_s": steps, "calls_last_run": calls,
             "warm_up_one_day_s": warm, "champion": champ,
             "cluster": {"replicas": cfg_s3.cluster.replicas, "memory": cfg_s3.cluster.memory,
                         "nthreads": cfg_s3.cluster.nthreads, "jvm_options": list(cfg_s3.cluster.jvm_options)}}
    note = (f"{rows:,} rows, {days} days, each day committed to S3 as its own partition (no Hive output), a new run "
            f"id per repetition; the champion's {champ['algo']} from {champ['training_window'][0]}; HiveServer2 = "
            "Spark Thrift Server, local[2]; moto S3 on loopback; per-step medians in extra.steps_s")
    labels = {"hive": "scoring.engine hive: score_in_hive (h2o_predict UDF in HiveServer2 on the table flights, "
                      "result staged as Parquet, read back, committed)",
              "offline": "scoring.engine offline: score_offline (the S3 partitions read at once, then per day "
                         "one MOJO JVM on all cores and the commit)",
              "cluster": f"scoring.engine cluster: create a local cluster ({cfg_s3.cluster.replicas} x "
                         f"{cfg_s3.cluster.memory} x {cfg_s3.cluster.nthreads} thread), wait, import the days, "
                         "score_in_cluster (commit), delete"}
    return [
        Result(name="engines_hive_vs_offline", title=f"Scoring {days} days in Hive vs offline", unit="rows/s",
               project_label=labels["hive"], baseline_label=labels["offline"], project=round(rows / h),
               baseline=round(rows / o), ratio=round(h / o, 3),
               ratio_definition="hive engine seconds / offline engine seconds, same rows, end to end, commit included",
               target=f"<= {TARGET}", met=h / o <= TARGET,
               samples={"hive_s": samples["hive"], "offline_s": samples["offline"], "cluster_s": samples["cluster"]},
               extra=extra, notes=note),
        Result(name="engines_hive_vs_cluster", title=f"Scoring {days} days in Hive vs in-cluster, cluster start included",
               unit="rows/s", project_label=labels["hive"], baseline_label=labels["cluster"], project=round(rows / h),
               baseline=round(rows / c), ratio=round(h / c, 3),
               ratio_definition="hive engine seconds / cluster engine seconds (create to delete), same rows",
               target="informative (no target)", met=None,
               samples={"hive_s": samples["hive"], "cluster_s": samples["cluster"]},
               extra={"seconds": extra["seconds"], "rows": rows}, notes=note),
    ]


if __name__ == "__main__":  # a smoke run: python -m benchmarks.engines [DAYS]
    import sys
    import tempfile

    from benchmarks import stack

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    work = Path(tempfile.mkdtemp(prefix="h2o-bench-engines-", dir=os.environ.get("TMPDIR", "/tmp")))
    os.environ.setdefault("NO_PROXY", "*")
    try:
        with stack.running(work / "services") as services:
            for r in run(1, services, work / "engines", work / "h2o-state",
                         (QUICK_WINDOW[0], QUICK_WINDOW[0] + timedelta(days=n))):
                print(r.title, r.project, r.baseline, r.ratio, r.extra.get("steps_s"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

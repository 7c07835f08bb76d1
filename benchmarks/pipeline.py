"""Pipeline overhead: the training + scoring DAG run (``airflow dags test``, local backend)
against a plain h2o script doing the same work (:mod:`benchmarks.baseline_script`).

The shipped ``arrival_delay.yaml`` trains and then scores the interval's last day in the same
cluster (``scoring.after_training``); it runs here without ``scoring.hive_table`` (the script
does not write Hive either). Both use 2 JVMs x 1g with 1 thread each, the same 28-day
window, the same scoring day and the same algorithms. The daily scoring DAG (its own
cluster, and the offline engine) is timed beside it. The JVMs' peak resident memory is
sampled during the runs for the memory benchmark.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import memory
from benchmarks.common import ROOT, Result, Stopwatch, log, median
from benchmarks.stack import Stack
from devtools import dag_folder
from devtools.airflow_local import airflow, airflow_env, dags_test, run_report
from h2o_tasks import config as pipeline_config
from h2o_tasks import s3, sizing

TRAIN_DAG, SCORE_DAG = "h2o_train__arrival-delay", "h2o_score__arrival-delay"
OFFLINE_DAG = "h2o_score__arrival-delay-offline"  # scoring.engine: offline (no cluster), a copy of the registry
LOGICAL_DATE = "2013-02-04"


@dataclass
class Setup:
    env: dict[str, str]
    log: Path
    workdir: Path
    cfg: Any


def prepare(stack: Stack, workdir: Path, source_uri: str = "") -> Setup:
    """A DAG folder with the pipeline variant, an Airflow home, a migrated database.

    :param source_uri: the partitions to read, instead of the example's (its registry and output
        then get a prefix of their own beside them).
    """
    dags = workdir / "dags"
    shutil.rmtree(dags, ignore_errors=True)
    dag_folder.make(dags, janitor=False)
    raw = dag_folder.example()
    raw["scoring"].pop("hive_table", None)
    if source_uri:
        raw["source"]["s3"]["uri"] = source_uri
        raw["registry_uri"] = f"{source_uri}-registry"
        raw["scoring"]["output_uri"] = f"{source_uri}-predictions"
    dag_folder.write_pipeline(dags, "arrival_delay", raw)
    # a pipeline of its own (no two pipelines share a registry or an output): its registry is a
    # copy of the training DAG's, made after each training run
    offline = {**raw, "name": f"{raw['name']}-offline", "registry_uri": raw["registry_uri"] + "-offline",
               "scoring": {**raw["scoring"], "engine": "offline", "output_uri": raw["scoring"]["output_uri"] + "-offline"}}
    dag_folder.write_pipeline(dags, "arrival_delay_offline", offline)
    s3 = stack.s3
    env = airflow_env(workdir / "airflow", s3_endpoint=s3.endpoint_url, s3_access_key=s3.access_key,
                      s3_secret_key=s3.secret_key, h2o_state_dir=workdir / "h2o")
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    logfile = workdir / "airflow-runs.log"
    if airflow(["db", "migrate"], env, logfile, timeout=900) != 0:
        raise RuntimeError(f"airflow db migrate failed; see {logfile}")
    return Setup(env, logfile, workdir, pipeline_config.parse(raw))


def run_dag(setup: Setup, dag_id: str) -> tuple[float, dict[str, Any]]:
    """Wall seconds of one ``airflow dags test``, and what its tasks reported."""
    with Stopwatch() as sw:
        if dags_test(dag_id, LOGICAL_DATE, setup.env, setup.log, timeout=1800) != 0:
            raise RuntimeError(f"{dag_id} failed; see {setup.log}")
    tasks = {r.task: {"state": r.state, "seconds": r.seconds, "result": r.result}
             for r in run_report(dag_id, LOGICAL_DATE, setup.env)}
    bad = {t: v["state"] for t, v in tasks.items() if v["state"] != "success"}
    if bad:
        raise RuntimeError(f"{dag_id}: tasks not successful: {bad}")
    return sw.seconds, tasks


def copy_registry(stack: Stack, src: str, dest: str) -> None:
    """Every object of one registry prefix into another (the offline pipeline's champion is the trained one)."""
    client = stack.s3.client()
    for key in s3.list_keys(client, src):
        s3.copy(client, key, dest + key[len(src):])


def run_baseline(stack: Stack, windows: dict[str, str], name: str,
                 jvm_options: tuple[str, ...] = (), prefix: str = "flights") -> tuple[float, dict[str, float]]:
    """Wall seconds of the script (reading the partitions under ``prefix``), and its own phase timings."""
    s3 = stack.s3
    cmd = [sys.executable, "-m", "benchmarks.baseline_script", "--endpoint", s3.endpoint_url, "--access-key",
           s3.access_key, "--secret-key", s3.secret_key, "--nodes", "2", "--memory", "1g", "--nthreads", "1",
           "--name", name, "--prefix", prefix, *[x for k, v in windows.items() for x in (f"--{k}", v)],
           *[f"--jvm-opt={o}" for o in jvm_options]]
    with Stopwatch() as sw:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_PROXY": "*"})
    if res.returncode != 0:
        raise RuntimeError(f"baseline script failed: {res.stderr[-3000:]}")
    return sw.seconds, json.loads(res.stdout.strip().splitlines()[-1])["phases"]


def run(reps: int, stack: Stack, workdir: Path, quick: bool = False) -> list[Result]:
    """The DAGs against the script, interleaved; ``quick`` leaves out the script with the pipeline's JVM options
    (an informative row)."""
    setup = prepare(stack, workdir)
    project: list[float] = []
    offline: list[float] = []
    scored: list[float] = []
    baseline: list[float] = []
    same_jvm: list[float] = []  # the script with the pipeline's cluster.jvm_options: orchestration cost alone
    reports: list[dict[str, Any]] = []
    phases: dict[str, float] = {}
    windows: dict[str, str] = {}
    peaks_p = memory.Sampler("h2o-arrival-delay")
    peaks_b = memory.Sampler("bench-baseline")
    peaks_p.start()
    peaks_b.start()
    try:
        for rep in range(reps):
            order = ("project", "baseline") if rep % 2 == 0 else ("baseline", "project")
            for which in order:
                if which == "project":
                    t_train, train = run_dag(setup, TRAIN_DAG)
                    t_score, score = run_dag(setup, SCORE_DAG)
                    copy_registry(stack, setup.cfg.registry_uri, setup.cfg.registry_uri + "-offline")
                    t_offline, scored_offline = run_dag(setup, OFFLINE_DAG)
                    project.append(round(t_train, 2))
                    scored.append(round(t_score, 2))
                    offline.append(round(t_offline, 2))
                    reports.append({TRAIN_DAG: train, SCORE_DAG: score, OFFLINE_DAG: scored_offline})
                    windows = {"train-start": train["import_data"]["result"]["start"],
                               "train-end": train["import_data"]["result"]["end"],
                               "score-day": train["import_scoring_data"]["result"]["start"]}
                    log(f"    rep {rep + 1}/{reps} project: training + scoring DAG {t_train:.1f}s; daily scoring "
                        f"DAG {t_score:.1f}s, offline {t_offline:.1f}s")
                else:
                    seconds, phases = run_baseline(stack, windows, f"bench-baseline-{rep}")
                    baseline.append(round(seconds, 2))
                    log(f"    rep {rep + 1}/{reps} baseline: {baseline[-1]:.1f}s {phases}")
                    if setup.cfg.cluster.jvm_options and not quick:
                        seconds, same = run_baseline(stack, windows, f"bench-baseline-jvm-{rep}",
                                                     setup.cfg.cluster.jvm_options)
                        same_jvm.append(round(seconds, 2))
                        log(f"    rep {rep + 1}/{reps} baseline with {' '.join(setup.cfg.cluster.jvm_options)}: "
                            f"{same_jvm[-1]:.1f}s {same}")
    finally:
        mem_p, mem_b = peaks_p.stop(), peaks_b.stop()
    p, b = median(project), median(baseline)
    last = reports[-1]
    tasks = {dag: {t: v["seconds"] for t, v in tasks.items()} for dag, tasks in last.items()}
    overhead = Result(
        name="pipeline_overhead", title="Training + scoring DAG run vs a plain h2o script", unit="s",
        project_label="airflow dags test of the training DAG: train, export, promote, score the last day "
                      "(one cluster, local backend)",
        baseline_label="plain h2o script: same import, train, export, score (one process, one cloud)",
        project=p, baseline=b, ratio=round(p / b, 3), ratio_definition="project wall seconds / script wall seconds",
        target="<= 1.2", met=p / b <= 1.2,
        samples={"project_s": project, "baseline_s": baseline, "baseline_same_jvm_options_s": same_jvm,
                 "daily_scoring_dag_s": scored, "daily_scoring_dag_offline_s": offline},
        extra={"task_seconds_last_run": tasks, "baseline_phases_last_run": phases, "windows": windows,
               "jvm_options": list(setup.cfg.cluster.jvm_options),
               "ratio_vs_script_with_same_jvm_options": round(p / median(same_jvm), 3) if same_jvm else None,
               "daily_scoring_dag_s": median(scored), "daily_scoring_dag_offline_s": median(offline)},
        notes="2 JVMs x 1g x 1 thread in both. The pipeline's nodes run with its cluster.jvm_options (the example: "
              "C1-only JIT), the script as a user writes it (default JVM); the script with the same options is timed "
              "too (extra.ratio_vs_script_with_same_jvm_options: the orchestration cost alone). "
              "The DAG run includes Airflow's own fixed cost of `dags test` (CLI "
              "start, DAG parse, the in-process execution API) and a new H2O session per task; it exports more "
              "than the script (POJO, metadata, report with plots) and gates the model. The daily scoring DAG "
              "(own cluster, cluster engine) and its offline variant are timed alone in samples/extra.")
    train_in = last[TRAIN_DAG]["import_data"]["result"]
    advice = sizing.advise(setup.cfg.cluster, int(train_in["input_bytes"]), "parquet")
    limit = advice.proposed_memory_mb / 0.75  # container memory for that heap (MaxRAMPercentage=75)
    by_p, by_b = mem_p.by_cloud(), mem_b.by_cloud()
    peak_p = max(by_p.values()) if by_p else None
    peak_b = max(by_b.values()) if by_b else None
    mem = Result(
        name="memory_peak_rss", title="Peak resident memory of an H2O JVM vs the sizing rule", unit="MiB",
        project_label="highest VmHWM of any pipeline JVM (all runs)",
        baseline_label=f"sizing rule: {advice.proposed_memory_mb} MiB heap per node -> {limit:.0f} MiB container",
        project=peak_p, baseline=round(limit, 1), ratio=round(peak_p / limit, 3) if peak_p else None,
        ratio_definition="peak RSS / container memory the rule implies (heap / 0.75)", target="<= 1.0",
        met=bool(peak_p and peak_p <= limit),
        samples={"pipeline_jvm_peaks_mib": sorted(v for _, v in mem_p.peaks.values()),
                 "script_jvm_peaks_mib": sorted(v for _, v in mem_b.peaks.values())},
        extra={"input_bytes": train_in["input_bytes"], "required_total_mb": advice.required_total_mb,
               "proposed_heap_mb": advice.proposed_memory_mb, "configured_heap_mb": setup.cfg.cluster.memory_mb,
               "script_peak_mib": peak_b},
        notes=f"{train_in['rows']} training rows, {int(train_in['input_bytes']) / 2**20:.1f} MB Parquet; JVM heap -Xmx "
              f"{setup.cfg.cluster.memory}; peak RSS includes heap, metaspace, code cache and thread stacks")
    results = [overhead]
    if same_jvm:  # the orchestration's own cost: the script given the pipeline's JVM options too
        sj = median(same_jvm)
        results.append(Result(
            name="pipeline_overhead_same_jvm_options",
            title="Training + scoring DAG run vs the script with the pipeline's JVM options", unit="s",
            project_label=overhead.project_label,
            baseline_label=f"the same script, nodes started with {' '.join(setup.cfg.cluster.jvm_options)}",
            project=p, baseline=sj, ratio=round(p / sj, 3), ratio_definition="project wall seconds / script wall seconds",
            target="informative (no target)", met=None, samples={"project_s": project, "baseline_s": same_jvm},
            notes="What Airflow and the pipeline's own work (contract checks, POJO, report, gate, per-task "
                  "sessions) cost once the JVM settings are equal."))
    return [*results, mem]

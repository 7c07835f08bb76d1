"""The training + scoring DAG against the plain h2o script as data grows.

Data: the scale series' flights (:mod:`benchmarks.offline_scale`: each day's rows ``k`` times,
0.34M, 1.3M and 5.4M rows over 365 days). At each size the example pipeline reads them
(``source.s3.uri`` of that size, its own registry and output) and its training DAG runs with
``airflow dags test`` (train on the 28-day window, export, gate, promote, score the last day in
the same cluster), against :mod:`benchmarks.baseline_script` doing the same work on the same
partitions, interleaved, as :mod:`benchmarks.pipeline` does at 1x. The fixed costs of the DAG
(Airflow's CLI and parse, a session per task, the report) are amortised as the data grows: the
ratio is reported at every size, with its target at 16x (<= 1.1). Plotted log-log to
``scale_pipeline.png``. A quick run measures the largest size only: its 1x would repeat the run that
:mod:`benchmarks.pipeline` has just timed (the same DAG, window and rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import offline_scale, pipeline, plots
from benchmarks.common import ROOT, Result, log, median
from benchmarks.stack import BUCKET, Stack

PLOT = ROOT / "benchmarks" / "scale_pipeline.png"
TARGET = 1.1


def run(reps: int, st: Stack, work: Path, max_scale: int, quick: bool = False, plot_path: Path = PLOT) -> list[Result]:
    """Every size up to ``max_scale`` (``quick``: the largest only), ``reps`` repetitions interleaved; the plot
    to ``plot_path``."""
    sizes = [k for k in offline_scale.SIZES if k <= max_scale] or [1]
    sizes = sizes[-1:] if quick else sizes
    figures: dict[int, dict[str, Any]] = {}
    for k in sizes:
        prefix = f"bench-scale-{k}x"
        offline_scale.upload(st, offline_scale.build(st.data_dir, k), prefix)
        setup = pipeline.prepare(st, work / f"{k}x", f"s3://{BUCKET}/{prefix}")
        samples: dict[str, list[float]] = {"project": [], "baseline": []}
        last: dict[str, Any] = {}
        phases: dict[str, float] = {}
        windows: dict[str, str] = {}
        for rep in range(reps):
            # the script's windows come from the DAG's own report: the DAG runs first in the first repetition
            for which in ("project", "baseline") if rep % 2 == 0 else ("baseline", "project"):
                if which == "project":
                    seconds, last = pipeline.run_dag(setup, pipeline.TRAIN_DAG)
                    windows = {"train-start": last["import_data"]["result"]["start"],
                               "train-end": last["import_data"]["result"]["end"],
                               "score-day": last["import_scoring_data"]["result"]["start"]}
                else:
                    seconds, phases = pipeline.run_baseline(st, windows, f"bench-scale-baseline-{k}x-{rep}",
                                                            prefix=prefix)
                samples[which].append(round(seconds, 2))
                log(f"    rep {rep + 1}/{reps} {k}x {which}: {seconds:.1f}s")
        rows = int(last["import_data"]["result"]["rows"])
        figures[k] = {"samples": samples, "training_rows": rows,
                      "task_seconds_last_run": {t: v["seconds"] for t, v in last.items()},
                      "baseline_phases_last_run": phases, "windows": windows}
        log(f"  {k}x: {rows:,} training rows; DAG {median(samples['project'])}s, script {median(samples['baseline'])}s")
    plots.loglog({"training + scoring DAG": {figures[k]["training_rows"]: median(figures[k]["samples"]["project"])
                                             for k in sizes},
                  "plain h2o script": {figures[k]["training_rows"]: median(figures[k]["samples"]["baseline"])
                                       for k in sizes}},
                 "Training + scoring DAG vs a plain h2o script", plot_path, "training rows")
    return [_result(k, figures[k]) for k in sizes]


def _result(k: int, f: dict[str, Any]) -> Result:
    p, b = median(f["samples"]["project"]), median(f["samples"]["baseline"])
    return Result(
        name=f"scale_pipeline_{k}x", title=f"Training + scoring DAG run vs a plain h2o script, {k}x "
                                           f"({f['training_rows']:,} training rows)", unit="s",
        project_label="airflow dags test of the training DAG: train, export, promote, score the last day "
                      "(one cluster, local backend)",
        baseline_label="plain h2o script: same import, train, export, score (one process, one cloud)",
        project=p, baseline=b, ratio=round(p / b, 3), ratio_definition="project wall seconds / script wall seconds",
        target=f"<= {TARGET}" if k == 16 else "informative (target at 16x)",
        met=p / b <= TARGET if k == 16 else None, samples=f["samples"],
        extra={"k": k, **{n: v for n, v in f.items() if n != "samples"}},
        notes="2 JVMs x 1g x 1 thread in both, the example's 28-day window and algorithms; the pipeline's nodes run "
              "with its cluster.jvm_options, the script with the JVM's defaults")

"""Batch scoring throughput: the offline scorer against ``PredictCsv`` and in-cluster predict.

The same MOJO (the example pipeline's GBM, trained here on the flights), the same CSV in,
a CSV of predictions out, for: H2O's ``PredictCsv`` exactly as ``h2o.mojo_predict_csv``
runs it (one JVM, one thread); the project's scorer (:func:`h2o_tasks.mojo_csv.predict_csv`,
row chunks in parallel) with 1..all cores; and in-cluster predict (import, predict, export)
on an already running one-node cloud with all cores.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.common import Result, Stopwatch, interleaved, local_cloud, log, median
from benchmarks.stack import BUCKET
from h2o_tasks import mojo_csv
from h2o_tasks.config import ClusterConfig, S3SourceConfig
from h2o_tasks.s3 import S3Settings

FEATURES = ["month", "day", "hour", "minute", "dep_delay", "carrier", "origin", "dest", "distance"]
ENUMS = ("carrier", "origin", "dest")
PREDICTCSV_JAVA_OPTIONS = ["-Xmx4g", "-XX:ReservedCodeCacheSize=256m"]  # h2o.mojo_predict_csv's defaults


@dataclass
class Model:
    jar: Path
    mojo: Path
    h2o: Any
    estimator: Any


def train_model(h2o: Any, s3: S3Settings, workdir: Path) -> Model:
    """The example pipeline's GBM (50 trees, depth 6) on the 2013 flights (from S3); MOJO + genmodel jar."""
    from h2o.estimators import H2OGradientBoostingEstimator

    from h2o_tasks.sources import s3 as s3_source

    year = s3_source.resolve(s3.client(), S3SourceConfig(uri=f"s3://{BUCKET}/flights"), date(2013, 1, 1), date(2014, 1, 1))
    frame = h2o.import_file(path=list(year.files))
    frame = frame[frame["arr_delay"].isna() == 0, :]
    frame["delayed"] = (frame["arr_delay"] > 15).asfactor()
    for col in ENUMS:
        frame[col] = frame[col].asfactor()
    gbm = H2OGradientBoostingEstimator(ntrees=50, max_depth=6, learn_rate=0.1, seed=42, model_id="bench_gbm")
    gbm.train(x=FEATURES, y="delayed", training_frame=frame)
    path = Path(gbm.download_mojo(path=str(workdir), get_genmodel_jar=True, genmodel_name="h2o-genmodel.jar"))
    mojo = workdir / "model.zip"
    path.rename(mojo)
    return Model(workdir / "h2o-genmodel.jar", mojo, h2o, gbm)


def write_inputs(data_dir: Path, workdir: Path, big_rows: int) -> dict[str, tuple[Path, int]]:
    """``flights``: every 2013 flight's features; ``generated``: ``big_rows`` rows drawn from them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from devtools.stack import seed

    table = pa.concat_tables([pq.read_table(p, columns=FEATURES) for p in seed.flight_partitions(data_dir)])
    flights = workdir / "flights.csv"
    table.to_pandas().to_csv(flights, index=False, na_rep="")
    idx = np.random.default_rng(2013).integers(0, table.num_rows, big_rows)
    big = workdir / f"generated-{big_rows}.csv"
    pcsv.write_csv(table.take(pa.array(idx)), big)
    return {"flights": (flights, table.num_rows), "generated": (big, big_rows)}


def predictcsv(model: Model, src: Path, out: Path) -> float:
    cmd = ["java", *PREDICTCSV_JAVA_OPTIONS, "-cp", str(model.jar), mojo_csv.GENMODEL_MAIN, "--mojo", str(model.mojo),
           "--input", str(src), "--output", str(out), "--decimal"]
    with Stopwatch() as sw:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return sw.seconds


def mojo_predict_csv(model: Model, src: Path, out: Path) -> float:
    with Stopwatch() as sw:
        model.h2o.mojo_predict_csv(str(src), str(model.mojo), str(out), genmodel_jar_path=str(model.jar))
    return sw.seconds


def project(model: Model, src: Path, out: Path, workers: int) -> float:
    with Stopwatch() as sw:
        mojo_csv.predict_csv(model.jar, model.mojo, src, out, workers=workers)
    return sw.seconds


def in_cluster(model: Model, src: Path, out: Path) -> float:
    h2o = model.h2o
    with Stopwatch() as sw:
        frame = h2o.import_file(str(src), col_types={c: "enum" for c in ENUMS})
        preds = model.estimator.predict(frame)
        h2o.export_file(preds, str(out), force=True)
    h2o.remove(preds)
    h2o.remove(frame)
    return sw.seconds


def _throughput(name: str, title: str, rows: int, samples: dict[str, list[float]], baseline: str, notes: str,
                target: str, threshold: float, extra: dict[str, Any]) -> Result:
    rate = {k: rows / median(v) for k, v in samples.items() if v}
    p, b = rate["project"], rate[baseline]
    # the same repetition's runs are adjacent in time: their ratio is less exposed to load drift
    paired = median([bs / ps for bs, ps in zip(samples[baseline], samples["project"], strict=False)])
    return Result(name=name, title=title, unit="rows/s", project_label="offline scorer, all cores",
                  baseline_label=extra.pop("baseline_label"), project=round(p), baseline=round(b),
                  ratio=round(p / b, 3), ratio_definition="project rows/s / baseline rows/s", target=target,
                  met=p / b >= threshold, samples={k: v for k, v in samples.items()},
                  extra={"rows": rows, "rows_per_s": {k: round(v) for k, v in rate.items()},
                         "paired_ratio_median": paired, **extra}, notes=notes)


def run(reps: int, s3: S3Settings, data_dir: Path, workdir: Path, state_dir: Path, big_rows: int) -> list[Result]:
    workdir.mkdir(parents=True, exist_ok=True)
    cores = mojo_csv.default_workers()
    out: list[Result] = []
    with local_cloud(state_dir, f"scoring-{os.getpid()}", ClusterConfig(replicas=1, memory="4g", nthreads=cores),
                     s3) as h2o:

        t = time.monotonic()
        model = train_model(h2o, s3, workdir)
        inputs = write_inputs(data_dir, workdir, big_rows)
        os.sync()  # the generated CSV's write-back would otherwise share the cores with the first timed runs
        log(f"  model trained and inputs written in {time.monotonic() - t:.0f}s")
        for key, (src, rows) in inputs.items():
            o = workdir / f"{key}-out"
            o.mkdir(exist_ok=True)
            runs = {"predictcsv": lambda s=src, o=o: predictcsv(model, s, o / "predictcsv.csv"),
                    "project": lambda s=src, o=o: project(model, s, o / "project.csv", cores),
                    "in_cluster": lambda s=src, o=o: in_cluster(model, s, o / "cluster.csv")}
            if key == "flights":  # scaling 1..cores and the Python wrapper, on the smaller set
                runs.update({f"project_{w}_cores": (lambda s=src, o=o, w=w: project(model, s, o / f"p{w}.csv", w))
                             for w in range(1, cores)})
                runs["h2o.mojo_predict_csv"] = lambda s=src, o=o: mojo_predict_csv(model, s, o / "wrapper.csv")
            log(f"  scoring {key}: {rows:,} rows, {src.stat().st_size / 2**20:.0f} MB CSV, {reps} reps")
            samples = interleaved(reps, runs, log)
            identical = filecmp.cmp(o / "predictcsv.csv", o / "project.csv", shallow=False)
            samples_c = {k: v for k, v in samples.items() if k != "in_cluster"}
            notes = (f"{rows:,} rows; {cores} cores; output of the project's scorer byte-identical to PredictCsv's: "
                     f"{identical}. In-cluster = import CSV + predict + export CSV on a running 1-node cloud "
                     f"({cores} threads, 4g); its start-up is not counted.")
            scaling = {"1": round(rows / median(samples["predictcsv"]))}
            scaling.update({str(w): round(rows / median(samples[f"project_{w}_cores"])) for w in range(1, cores)
                            if f"project_{w}_cores" in samples})
            scaling[str(cores)] = round(rows / median(samples["project"]))
            out.append(_throughput(f"scoring_{key}_vs_predictcsv", f"Offline scoring, {key} ({rows:,} rows) vs PredictCsv",
                                   rows, samples_c, "predictcsv", notes, ">= 1.8", 1.8,
                                   {"baseline_label": "PredictCsv (h2o.mojo_predict_csv's command, 1 thread)",
                                    "identical_output": identical,
                                    "rows_per_s_by_cores": scaling if key == "flights" else {}}))
            out.append(_throughput(f"scoring_{key}_vs_in_cluster", f"Offline scoring, {key} ({rows:,} rows) vs in-cluster",
                                   rows, {"project": samples["project"], "in_cluster": samples["in_cluster"]},
                                   "in_cluster", notes, ">= 1.0", 1.0,
                                   {"baseline_label": f"in-cluster predict (import + predict + export, {cores} threads)"}))
        h2o.remove_all()
    return out

"""The hand-written baseline: one plain h2o script doing what the two DAGs do.

Starts N H2O JVMs forming one cloud (flatfile on loopback, same heap and threads as the
pipeline's cluster), imports the training window's Parquet partitions from S3, trains GBM
and GLM with the pipeline's parameters, exports the better model's MOJO and genmodel jar to
S3, imports the scoring day, predicts, writes the predictions to S3, and stops the JVMs.
Run: ``python -m benchmarks.baseline_script --endpoint URL --access-key K --secret-key S ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

T0 = time.monotonic()

FEATURES = ["month", "day", "hour", "minute", "dep_delay", "carrier", "origin", "dest", "distance"]
IDS = ["year", "month", "day", "carrier", "flight", "origin", "dest"]


def free_port() -> int:
    while True:
        port = random.randrange(20000, 30000, 2)
        with contextlib.ExitStack() as stack:
            try:
                for p in (port, port + 1):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", p))
                return port
            except OSError:
                continue


def cloud_size(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/3/Cloud?skip_ticks=true", timeout=2) as resp:
            body = json.load(resp)
        return int(body["cloud_size"]) if body.get("consensus") else 0
    except Exception:
        return 0


def day_files(s3, bucket: str, prefix: str, start: str, end: str) -> list[str]:
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/dt="):
        for obj in page.get("Contents", []):
            day = obj["Key"][len(prefix) + 4:].split("/", 1)[0]
            if start <= day < end and obj["Key"].endswith(".parquet"):
                files.append(f"s3://{bucket}/{obj['Key']}")
    return files


def main() -> int:
    ap = argparse.ArgumentParser()
    for name in ("endpoint", "access-key", "secret-key", "train-start", "train-end", "score-day"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--memory", default="1g")
    ap.add_argument("--nthreads", type=int, default=1)
    ap.add_argument("--name", default="baseline")
    ap.add_argument("--prefix", default="flights", help="the partitions' prefix in the bucket")
    ap.add_argument("--jvm-opt", action="append", default=[], help="an extra JVM option for every node (repeatable)")
    a = ap.parse_args()

    import boto3
    import h2o
    from h2o.estimators import H2OGeneralizedLinearEstimator, H2OGradientBoostingEstimator

    phases: dict[str, float] = {}
    mark = [T0]

    def lap(name: str) -> None:
        now = time.monotonic()
        phases[name] = round(now - mark[0], 2)
        mark[0] = now

    lap("python_imports")
    work = Path(tempfile.mkdtemp(prefix="h2o-baseline-"))
    jar = Path(h2o.__file__).parent / "backend" / "bin" / "h2o.jar"
    ports = [free_port() for _ in range(a.nodes)]
    (work / "flatfile").write_text("".join(f"127.0.0.1:{p}\n" for p in ports))
    jvms = [subprocess.Popen(["java", f"-Xmx{a.memory}", *a.jvm_opt, f"-Dsys.ai.h2o.persist.s3.endPoint={a.endpoint}",
                              "-Dsys.ai.h2o.persist.s3.enable.path.style=true", "-jar", str(jar), "-name", a.name,
                              "-flatfile", str(work / "flatfile"), "-ip", "127.0.0.1", "-port", str(p),
                              "-nthreads", str(a.nthreads), "-ice_root", str(work / f"ice{i}"), "-log_level", "WARN"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i, p in enumerate(ports)]
    try:
        url = f"http://127.0.0.1:{ports[0]}"
        while cloud_size(url) != a.nodes:
            time.sleep(0.1)
        lap("cloud_start")
        with contextlib.redirect_stdout(io.StringIO()):
            h2o.connect(url=url, verbose=False)
        h2o.no_progress()
        from h2o.persist import set_s3_credentials

        set_s3_credentials(a.access_key, a.secret_key)
        s3 = boto3.client("s3", endpoint_url=a.endpoint, aws_access_key_id=a.access_key,
                          aws_secret_access_key=a.secret_key, region_name="us-east-1")
        lap("connect")
        # train
        data = h2o.import_file(path=day_files(s3, "h2o-demo", a.prefix, a.train_start, a.train_end))
        lap("import")
        data = data[data["arr_delay"].isna() == 0, [*FEATURES, "arr_delay"]]
        data["delayed"] = (data["arr_delay"] > 15).asfactor()
        for col in ("carrier", "origin", "dest"):
            data[col] = data[col].asfactor()
        train, valid = data.split_frame(ratios=[0.8], seed=42)
        models = [H2OGradientBoostingEstimator(ntrees=50, max_depth=6, learn_rate=0.1, seed=42),
                  H2OGeneralizedLinearEstimator(family="binomial", lambda_search=False, alpha=0.5, seed=42)]
        for m in models:
            m.train(x=FEATURES, y="delayed", training_frame=train, validation_frame=valid)
        best = max(models, key=lambda m: m.model_performance(valid).auc())
        lap("train")
        # export
        mojo = best.download_mojo(path=str(work), get_genmodel_jar=True)
        for f in (Path(mojo), work / "h2o-genmodel.jar"):
            s3.upload_file(str(f), "h2o-demo", f"baseline/models/{a.name}/{f.name}")
        lap("export")
        # score
        end = (date.fromisoformat(a.score_day) + timedelta(days=1)).isoformat()
        day = h2o.import_file(path=day_files(s3, "h2o-demo", a.prefix, a.score_day, end))
        for col in ("carrier", "origin", "dest"):
            day[col] = day[col].asfactor()
        preds = day[IDS].cbind(best.predict(day))
        h2o.export_file(preds, f"s3://h2o-demo/baseline/predictions/{a.name}/dt={a.score_day}", force=True, parts=-1)
        lap("score")
        print(json.dumps({"rows_scored": preds.nrows, "best": best.algo, "phases": phases}))
    finally:
        with contextlib.suppress(Exception):
            h2o.connection().close()
        for p in jvms:
            p.terminate()
        for p in jvms:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

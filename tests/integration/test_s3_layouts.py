"""S3 sources laid out other than ``dt=``: ``year=/month=/day=``, ``date=``, and an hour level under
each day; listed on a real S3 API server (moto) and imported by a real H2O cloud."""

from __future__ import annotations

from datetime import date

import pyarrow.parquet as pq
import pytest

from h2o_tasks import config, ingest, s3, scoring
from h2o_tasks.errors import SourceNotFoundError
from h2o_tasks.sources import s3 as s3_source
from tests.fixtures.pipelines import variant
from tests.fixtures.s3 import file_bytes, write_day, write_hours

pytestmark = pytest.mark.integration

DAYS = [date(2013, 2, 3), date(2013, 2, 4), date(2013, 2, 5)]
LAYOUTS = {"ymd": "year={year}/month={month}/day={day}", "date": "date={date}", "hourly": "dt={date}/hr={hour}"}


@pytest.fixture(scope="module")
def layouts(s3_settings, flights_parquet_dir):
    """Three days of flights under each layout of :data:`LAYOUTS` in its own bucket; the hourly one has
    one file per hour that has flights, and beside them things that are not an hour's data."""
    client = s3_settings.client()
    bucket = "layouts-test"
    client.create_bucket(Bucket=bucket)
    rows: dict[date, int] = {}
    hours: dict[date, int] = {}
    for day in DAYS:
        table = pq.read_table(flights_parquet_dir / "flights" / f"dt={day.isoformat()}" / "part-0.parquet")
        rows[day] = table.num_rows
        for name in ("ymd", "date"):
            write_day(client, f"s3://{bucket}/{name}", day, table, partitions=LAYOUTS[name])
        hours[day] = len(write_hours(client, f"s3://{bucket}/hourly", day, table))
        s3.write_bytes(client, f"s3://{bucket}/hourly/dt={day.isoformat()}/_SUCCESS", b"")
        s3.write_bytes(client, f"s3://{bucket}/hourly/dt={day.isoformat()}/notes/old.parquet",
                       file_bytes(table.slice(0, 5)))  # not inside an hour's directory
    return bucket, rows, hours


def _cfg(bucket: str, layout: str) -> config.PipelineConfig:
    return variant(name=f"layout-{layout}", registry_uri=f"s3://{bucket}/models/{layout}",
                   source={"kind": "s3", "training_window_days": 3,
                           "s3": {"uri": f"s3://{bucket}/{layout}", "partitions": LAYOUTS[layout]}},
                   scoring={"output_uri": f"s3://{bucket}/predictions/{layout}", "hive_table": ""})


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_resolves_to_its_days_files(layouts, s3_settings, layout):
    bucket, _, hours = layouts
    cfg = _cfg(bucket, layout)
    resolved = s3_source.resolve(s3_settings.client(), cfg.source.s3, DAYS[0], date(2013, 2, 6), all_required=True)
    assert resolved.days_found == tuple(d.isoformat() for d in DAYS) and not resolved.days_missing
    per_day = {d.isoformat(): hours[d] if layout == "hourly" else 1 for d in DAYS}
    assert {d: resolved.file_days.count(d) for d in per_day} == per_day
    assert all(s3_source.day_prefix(LAYOUTS[layout], date.fromisoformat(d)) in f
               for f, d in zip(resolved.files, resolved.file_days, strict=True))
    assert not any("/notes/" in f or f.endswith("_SUCCESS") for f in resolved.files)


def test_a_missing_day_names_its_directory_in_the_layout(layouts, s3_settings):
    bucket, _, _ = layouts
    cfg = _cfg(bucket, "ymd")
    with pytest.raises(SourceNotFoundError) as err:
        s3_source.resolve(s3_settings.client(), cfg.source.s3, DAYS[0], date(2013, 2, 8), all_required=True)
    assert err.value.value == f"s3://{bucket}/ymd/year=2013/month=02/day=06", str(err.value)
    assert "year={year}/month={month}/day={day}" in str(err.value)


@pytest.mark.parametrize("layout", ["ymd", "hourly"])
def test_the_cluster_imports_every_row_of_the_window(layouts, s3_settings, h2o_cloud, layout):
    """Training reads the three days; by the task (small) and by the nodes (client_fetch_max_bytes: 0)."""
    bucket, rows, _ = layouts
    for fetch in (64 << 20, 0):
        cfg = _cfg(bucket, layout).with_overrides(source={"s3": {"uri": f"s3://{bucket}/{layout}",
                                                                 "partitions": LAYOUTS[layout],
                                                                 "client_fetch_max_bytes": fetch}})
        frame, result = ingest.import_interval(h2o_cloud, cfg, "train", DAYS[0], date(2013, 2, 6), s3=s3_settings)
        try:
            assert frame.nrows == sum(rows.values()), (fetch, result)
        finally:
            h2o_cloud.remove(frame)


def test_offline_scoring_reads_each_day_of_an_hourly_layout_whole(layouts, s3_settings):
    bucket, rows, _ = layouts
    cfg = _cfg(bucket, "hourly")
    by_day = scoring._read_days(s3_settings.client(), cfg, DAYS[0], date(2013, 2, 6))
    assert {d: t.num_rows for d, t in by_day.items()} == rows

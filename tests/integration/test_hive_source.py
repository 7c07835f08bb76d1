"""The Hive source against a real HiveServer2 with the seeded flights."""

from datetime import date

import pyarrow.parquet as pq
import pytest

from h2o_tasks.config import HiveSourceConfig
from h2o_tasks.errors import InputDataError, SourceNotFoundError
from h2o_tasks.sources import hive

pytestmark = pytest.mark.integration
CFG = HiveSourceConfig(table="flights")


@pytest.fixture
def conn(hive_server, seeded_hive):
    c = hive_server.connect()
    yield c
    c.close()


def test_seeded_tables_have_the_real_row_counts_and_declared_types(conn, seeded_hive):
    assert seeded_hive == {"flights": 336_776, "weather": 26_115, "planes": 3_322}
    types = hive.check_table(conn, CFG, ["arr_delay", "carrier", "distance"])
    assert types["arr_delay"] == "double" and types["carrier"] == "string"


def test_stage_query_writes_parquet_matching_a_count(conn, tmp_path):
    cols = ["month", "day", "carrier", "arr_delay"]
    sql = hive.build_query(CFG, cols, date(2013, 1, 1), date(2013, 1, 8))
    staged = hive.stage_query(conn, sql, str(tmp_path / "stage"))
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM flights WHERE dt >= '2013-01-01' AND dt < '2013-01-08'")
    assert staged.rows == cur.fetchone()[0] > 5000
    assert staged.files and all(f.endswith(".parquet") or "part-" in f for f in staged.files)
    assert pq.ParquetFile(staged.files[0]).schema_arrow.field("arr_delay").type == "double"
    hive.cleanup(staged.path)


def test_empty_interval_is_a_clear_error_and_leaves_no_staging(conn, tmp_path):
    sql = hive.build_query(CFG, ["month"], date(2014, 6, 1), date(2014, 6, 2))
    with pytest.raises(InputDataError) as err:
        hive.stage_query(conn, sql, str(tmp_path / "stage"))
    assert "no rows" in str(err.value) and "Fix:" in str(err.value)
    assert not (tmp_path / "stage").exists()


def test_missing_table_and_column(conn):
    with pytest.raises(SourceNotFoundError) as err:
        hive.check_table(conn, HiveSourceConfig(table="no_such_table"), ["month"])
    assert err.value.field == "source.hive.table" and "no_such_table" in str(err.value)
    with pytest.raises(InputDataError) as err:
        hive.check_table(conn, CFG, ["month", "wingspan"])
    assert "wingspan" in str(err.value)


def test_write_partition_twice_replaces(conn, tmp_path):
    import pyarrow as pa

    d = tmp_path / "preds"
    d.mkdir()
    pq.write_table(pa.table({"flight": [1, 2, 3], "p1": [0.1, 0.5, 0.9]}), d / "part-0.parquet")
    cols = [("flight", "INT"), ("p1", "DOUBLE")]
    assert hive.write_partition(conn, "t_preds", "dt", "2013-02-01", str(d), cols) == 3
    assert hive.write_partition(conn, "t_preds", "dt", "2013-02-01", str(d), cols) == 3
    assert hive.write_partition(conn, "t_preds", "dt", "2013-02-02", str(d), cols) == 3
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM t_preds")
    assert cur.fetchone()[0] == 6

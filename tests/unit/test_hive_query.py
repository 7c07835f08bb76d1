"""The Hive source's SQL, without a server."""

from datetime import date

import pytest

from h2o_tasks.config import HiveSourceConfig
from h2o_tasks.errors import InputDataError
from h2o_tasks.sources import hive


def test_build_query_quotes_identifiers_and_uses_a_half_open_iso_interval():
    cfg = HiveSourceConfig(table="flights", database="demo", partition_column="dt")
    sql = hive.build_query(cfg, ["month", "arr_delay"], date(2013, 1, 1), date(2013, 1, 8))
    assert sql == ("SELECT `month`, `arr_delay` FROM `demo`.`flights` "
                   "WHERE `dt` >= '2013-01-01' AND `dt` < '2013-01-08'")


def test_build_query_default_database_and_other_partition_column():
    sql = hive.build_query(HiveSourceConfig(table="t", partition_column="ds"), ["a"], date(2013, 12, 31), date(2014, 1, 1))
    assert "FROM `default`.`t`" in sql and "`ds` >= '2013-12-31' AND `ds` < '2014-01-01'" in sql


@pytest.mark.parametrize("bad", ["a b", "a`b", "x;drop table t", "1abc", ""])
def test_build_query_refuses_identifiers_that_are_not_plain(bad):
    with pytest.raises(InputDataError) as err:
        hive.build_query(HiveSourceConfig(table="flights"), ["month", bad], date(2013, 1, 1), date(2013, 1, 2))
    assert err.value.field == "features" and "Fix:" in str(err.value)


def test_build_query_refuses_an_empty_interval_or_no_columns():
    cfg = HiveSourceConfig(table="flights")
    with pytest.raises(InputDataError, match="interval"):
        hive.build_query(cfg, ["month"], date(2013, 1, 2), date(2013, 1, 2))
    with pytest.raises(InputDataError, match="features"):
        hive.build_query(cfg, [], date(2013, 1, 1), date(2013, 1, 2))


def test_an_empty_result_is_described_by_table_and_interval():
    sql = hive.build_query(HiveSourceConfig(table="flights"), ["month"], date(2014, 6, 1), date(2014, 6, 2))
    assert hive._describe(sql) == ("flights", "dt in [2014-06-01, 2014-06-02)")


def test_staging_under_a_hidden_directory_is_refused_before_any_query():
    with pytest.raises(InputDataError) as err:
        hive.stage_query(None, "SELECT 1", "/work/.state/hive-staging/run-1")
    assert err.value.field == "staging_dir" and "file_deny_glob" in str(err.value)


def test_a_span_of_days_is_one_scan_with_each_row_tagged_by_its_day():
    from h2o_tasks.intervals import Period, periods

    days = periods("day", date(2013, 1, 30), date(2013, 2, 2))
    q = hive.periods_query(HiveSourceConfig(table="flights"), days)
    assert q.periods == {0: Period(date(2013, 1, 30)), 1: Period(date(2013, 1, 31)), 2: Period(date(2013, 2, 1))}
    assert q.select("`a`") == ("SELECT `a`, datediff(CAST(`dt` AS DATE), DATE '2013-01-30') AS h2o_period "
                               "FROM `default`.`flights` WHERE `dt` >= '2013-01-30' AND `dt` < '2013-02-02'")
    assert q.count_sql().endswith("GROUP BY h2o_period")


def test_a_span_of_hours_is_indexed_by_hours_since_its_first_instant():
    from datetime import datetime

    from h2o_tasks.intervals import Period, periods

    hours = periods("hour", datetime(2013, 1, 1, 22), datetime(2013, 1, 2, 1))
    q = hive.periods_query(HiveSourceConfig(table="t", partition_column="ts", partition_format="datetime"), hours)
    assert q.periods == {0: Period(date(2013, 1, 1), 22), 1: Period(date(2013, 1, 1), 23), 2: Period(date(2013, 1, 2), 0)}
    # 1357077600 is 2013-01-01T22:00:00Z
    assert "CAST(floor((unix_timestamp(CAST(`ts` AS TIMESTAMP)) - 1357077600) / 3600) AS BIGINT)" in q.index
    assert ("CAST(`ts` AS TIMESTAMP) >= TIMESTAMP '2013-01-01T22:00:00Z' AND "
            "CAST(`ts` AS TIMESTAMP) < TIMESTAMP '2013-01-02T01:00:00Z'") in q.source


def test_rows_whose_partition_value_is_not_a_date_are_refused_not_dropped():
    """The server's answer to the count query is scripted here; the SQL itself is checked above."""
    from h2o_tasks.intervals import periods

    class Cursor:
        def execute(self, sql):
            assert "GROUP BY" in sql

        def fetchall(self):
            return [(0, 5), (None, 2)]

        def close(self):
            pass

    class Conn:
        def cursor(self):
            return Cursor()

    q = hive.periods_query(HiveSourceConfig(table="flights"), periods("day", date(2013, 1, 1), date(2013, 1, 3)))
    with pytest.raises(InputDataError) as err:
        hive.count_periods(Conn(), q)
    assert err.value.field == "source.hive.partition_column" and "2 rows" in str(err.value)

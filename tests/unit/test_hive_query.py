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

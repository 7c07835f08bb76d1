"""S3 Parquet partitions parsed with a setup from the first file: same frame as H2O's full setup, clear schema errors."""

from __future__ import annotations

import io
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from h2o_tasks import s3
from h2o_tasks.config import S3SourceConfig
from h2o_tasks.errors import InputDataError
from h2o_tasks.sources import s3 as s3_source

pytestmark = pytest.mark.integration


def _write_days(client, bucket: str, tables: list[pa.Table]) -> list[str]:
    for i, table in enumerate(tables):
        buf = io.BytesIO()
        pq.write_table(table, buf)
        s3.write_bytes(client, f"s3://{bucket}/data/dt=2013-02-0{i + 1}/part-0.parquet", buf.getvalue())
    return [f"2013-02-0{i + 1}" for i in range(len(tables))]


def _resolve(s3_settings, bucket: str, n: int) -> s3_source.ResolvedInput:
    return s3_source.resolve(s3_settings.client(), S3SourceConfig(uri=f"s3://{bucket}/data"), date(2013, 2, 1),
                             date(2013, 2, 1 + n))


def test_first_file_setup_gives_the_frame_of_a_full_setup(h2o_cloud, s3_settings, s3_bucket):
    """Later files widen ints to doubles, fill an all-null string column, and hold NAs."""
    tables = [pa.table({"x": pa.array([1, 2], pa.int64()), "s": pa.array([None, None], pa.string()),
                        "f": pa.array([1.0, 2.0], pa.float32())}),
              pa.table({"x": pa.array([1.5, 2.5]), "s": pa.array(["a", "b"]), "f": pa.array([3.5, 4.5])}),
              pa.table({"x": pa.array([7, None], pa.int32()), "s": pa.array(["c", None]),
                        "f": pa.array([None, 4.5], pa.float32())})]
    _write_days(s3_settings.client(), s3_bucket, tables)
    resolved = _resolve(s3_settings, s3_bucket, 3)
    ours = s3_source.import_frame(h2o_cloud, resolved, "parquet", "t_first_file_setup")
    full = h2o_cloud.import_file(path=list(resolved.files), destination_frame="t_full_setup")
    try:
        assert ours.types == full.types and ours.nrows == full.nrows == 6
        assert ours.as_data_frame().equals(full.as_data_frame())
    finally:
        h2o_cloud.remove(ours)
        h2o_cloud.remove(full)


@pytest.mark.parametrize("other", [pa.table({"x": [4.0]}), pa.table({"x": [8.0], "s": ["g"], "z": [1]}),
                                   pa.table({"s": ["h"], "x": [9.0]})],
                         ids=["missing-column", "extra-column", "other-order"])
def test_files_with_other_columns_are_named_before_the_cluster_parses(h2o_cloud, s3_settings, s3_bucket, other):
    client = s3_settings.client()
    _write_days(client, s3_bucket, [pa.table({"x": [1.0, 2.0], "s": ["a", "b"]}), other])
    with pytest.raises(InputDataError) as err:
        s3_source.import_frame(h2o_cloud, _resolve(s3_settings, s3_bucket, 2), "parquet", "t_columns_differ",
                               client=client)
    assert err.value.field == "source.s3.uri" and err.value.value.endswith("dt=2013-02-02/part-0.parquet")
    assert "schemas differ" in str(err.value) and "['x', 's']" in str(err.value)
    assert "t_columns_differ" not in h2o_cloud.ls()["key"].tolist()


def test_a_parse_failing_on_another_schema_reports_h2o_reason_and_leaves_no_frame(h2o_cloud, s3_settings, s3_bucket):
    _write_days(s3_settings.client(), s3_bucket, [pa.table({"x": [1.0, 2.0], "s": ["a", "b"]}),
                                                  pa.table({"x": [8.0], "s": ["g"], "z": [1]})])
    with pytest.raises(InputDataError) as err:  # no client: no footer check, the parse itself fails
        s3_source.import_frame(h2o_cloud, _resolve(s3_settings, s3_bucket, 2), "parquet", "t_schema_differs")
    assert err.value.field == "source.s3.uri" and "schemas differ" in str(err.value)
    left = h2o_cloud.ls()["key"].tolist()
    assert "t_schema_differs" not in left and not [k for k in left if s3_bucket in k]  # nor the file keys


def test_parquet_columns_reads_the_footer_and_rejects_other_files(s3_settings, s3_bucket):
    client = s3_settings.client()
    wide = pa.table({f"c{i:04d}": [float(i)] for i in range(3000)})  # a footer bigger than one tail read
    buf = io.BytesIO()
    pq.write_table(wide, buf)
    s3.write_bytes(client, f"s3://{s3_bucket}/wide.parquet", buf.getvalue())
    assert s3_source.parquet_columns(client, f"s3://{s3_bucket}/wide.parquet") == wide.column_names
    s3.write_bytes(client, f"s3://{s3_bucket}/not.parquet", b"a,b\n1,2\n")
    with pytest.raises(InputDataError, match="not a Parquet file"):
        s3_source.parquet_columns(client, f"s3://{s3_bucket}/not.parquet")
    s3.write_bytes(client, f"s3://{s3_bucket}/broken.parquet", b"garbage" * 20 + (12).to_bytes(4, "little") + b"PAR1")
    with pytest.raises(InputDataError, match="unreadable Parquet footer"):
        s3_source.parquet_columns(client, f"s3://{s3_bucket}/broken.parquet")

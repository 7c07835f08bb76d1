"""Committing predictions into a Hive table whose schema drifted since it was made, on the real
HiveServer2 and S3 API: a column the predictions lack, or of another type, refuses the commit before
anything is switched (the previous output stays what readers see, in S3 and in Hive), naming the
table and both schemas; columns the predictions add are added to the table (the migration the sink
does by itself)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from h2o_tasks import commit, hive_sink, predictions, s3
from h2o_tasks.errors import InputDataError

pytestmark = pytest.mark.integration
TABLE = "drift_predictions"
DAY = "2013-02-04"
COLS = [("flight", "BIGINT"), ("p1", "DOUBLE")]
RETENTION = predictions.Retention(timedelta(hours=1), timedelta(hours=4))


@pytest.fixture
def sink(hive_server, s3_settings, s3_bucket, tmp_path):
    conn = hive_server.connect()
    conn.cursor().execute(f"DROP TABLE IF EXISTS {TABLE}")
    target = predictions.HiveTarget(TABLE, str(tmp_path / TABLE), hive_server.connect)
    yield s3_settings.client(), f"s3://{s3_bucket}/predictions", target, conn
    conn.cursor().execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.close()


def publish(client, output: str, hive, columns, rows, run_id: str, day: str = DAY):
    attempt = commit.new_attempt(s3.join(output, f"dt={day}"), run_id)
    body = ",".join(c for c, _ in columns) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    s3.write_bytes(client, s3.join(attempt.uri, "part-00000.csv"), body.encode())
    return attempt, predictions.publish(client, attempt, rows_in=len(rows), columns=columns, retention=RETENTION,
                                        model_version="m", run_id=run_id, spec={"dt": day}, hive=hive)


def location(conn, day: str = DAY) -> str:
    cur = conn.cursor()
    cur.execute(f"DESCRIBE FORMATTED {TABLE} PARTITION (dt='{day}')")
    return next(r[1] for r in cur.fetchall() if r[0] and r[0].strip() == "Location").rstrip("/")


def test_a_column_added_to_the_table_since_refuses_the_commit_and_keeps_the_previous_output(sink):
    client, output, hive, conn = sink
    first, done = publish(client, output, hive, COLS, [(1, 0.5), (2, 0.25)], "run-1")
    assert done.hive_rows == 2 and location(conn).endswith(first.id)
    conn.cursor().execute(f"ALTER TABLE {TABLE} ADD COLUMNS (note STRING)")  # by hand, since

    with pytest.raises(InputDataError) as err:
        publish(client, output, hive, COLS, [(1, 0.9), (2, 0.8), (3, 0.7)], "run-2")
    assert (err.value.field, err.value.value) == ("scoring.hive_table", TABLE)
    assert ("has the schema (flight BIGINT, p1 DOUBLE, note STRING), the new predictions (flight BIGINT, p1 DOUBLE): "
            "column(s) note are missing") in str(err.value)
    assert "migrate this one by hand" in err.value.fix
    # nothing was switched: S3 and Hive readers still see the first commit, whole
    manifest, _ = commit.read_manifest(client, s3.join(output, f"dt={DAY}"))
    assert manifest.attempt == first.id and manifest.rows == 2
    assert hive_sink.partition_rows(conn, TABLE, {"dt": DAY}) == 2 and location(conn).endswith(first.id)
    assert list(hive_sink.attempt_dirs(hive.attempts(f"dt={DAY}"))) == [first.id]  # no Parquet of the refused one


def test_a_column_retyped_since_refuses_the_commit(sink, tmp_path):
    client, output, hive, conn = sink
    first, _ = publish(client, output, hive, COLS, [(1, 0.5)], "run-1")
    cur = conn.cursor()  # someone made the table again, with flight as text
    cur.execute(f"DROP TABLE {TABLE}")
    cur.execute(f"CREATE EXTERNAL TABLE {TABLE} (flight STRING, p1 DOUBLE) PARTITIONED BY (dt STRING) "
                f"STORED AS PARQUET LOCATION '{hive.location}'")
    with pytest.raises(InputDataError) as err:
        publish(client, output, hive, COLS, [(1, 0.9)], "run-2")
    assert ("has the schema (flight STRING, p1 DOUBLE), the new predictions (flight BIGINT, p1 DOUBLE): "
            "column(s) flight change type") in str(err.value)
    manifest, _ = commit.read_manifest(client, s3.join(output, f"dt={DAY}"))
    assert manifest.attempt == first.id
    assert hive_sink.table_columns(conn, TABLE, "dt") == [("flight", "STRING"), ("p1", "DOUBLE")]  # left as found


def test_new_prediction_columns_are_added_to_the_table_and_older_partitions_read_them_as_null(sink):
    client, output, hive, conn = sink
    publish(client, output, hive, COLS, [(1, 0.5), (2, 0.25)], "run-1", day="2013-02-03")
    # the model now knows a class more: one more probability column
    _, done = publish(client, output, hive, [*COLS, ("p2", "DOUBLE")], [(1, 0.5, 0.1), (2, 0.25, 0.3)], "run-2")
    assert done.hive_rows == 2
    assert hive_sink.table_columns(conn, TABLE, "dt") == [*COLS, ("p2", "DOUBLE")]
    cur = conn.cursor()
    cur.execute(f"SELECT dt, count(*), count(p2), sum(p2) FROM {TABLE} GROUP BY dt ORDER BY dt")
    assert [(r[0], r[1], r[2], round(r[3] or 0, 6)) for r in cur.fetchall()] == [("2013-02-03", 2, 0, 0),
                                                                                 (DAY, 2, 2, 0.4)]

"""Committing outputs: replace an S3 prefix's contents with staged objects, all or nothing visible."""

from __future__ import annotations

from typing import Any

from h2o_tasks import s3

SUCCESS = "_SUCCESS"


def _is_marker(uri: str) -> bool:
    return uri.rsplit("/", 1)[-1] == SUCCESS


def commit_s3(client: Any, staging_uri: str, final_uri: str) -> list[str]:
    """Make ``final_uri`` hold exactly the staged objects, then write ``_SUCCESS``.

    Readers that wait for ``_SUCCESS`` (as Spark, Hive and H2O jobs do) never see a partial
    mix; a re-run of the interval replaces the output instead of adding to it. A staged
    ``_SUCCESS`` is not copied (the commit writes the marker last), objects of any size are
    copied (:func:`h2o_tasks.s3.copy`), and the staging prefix is removed.
    """
    staged = [k for k in s3.list_keys(client, staging_uri) if not k.endswith(".crc") and not _is_marker(k)]
    if not staged:
        from h2o_tasks.errors import InputDataError

        raise InputDataError("staging", staging_uri, "holds no output to commit", "check the scoring step's log")
    final_bucket, _final_prefix = s3.split_uri(final_uri)
    old = set(s3.list_keys(client, final_uri))
    marker = s3.join(final_uri, SUCCESS)
    if marker in old:  # from now on the partition is incomplete until the new marker
        client.delete_object(Bucket=final_bucket, Key=s3.split_uri(marker)[1])
    written = []
    for uri in staged:
        key = s3.split_uri(uri)[1]
        rel = key[len(s3.split_uri(staging_uri)[1].rstrip("/")) + 1:]
        dest = s3.join(final_uri, rel)
        s3.copy(client, uri, dest)
        written.append(dest)
    stale = old - set(written) - {marker}
    for uri in sorted(stale):
        client.delete_object(Bucket=final_bucket, Key=s3.split_uri(uri)[1])
    s3.write_bytes(client, marker, b"")
    s3.delete_prefix(client, staging_uri)
    return written

"""S3 data source: date partitions ``{uri}/dt=YYYY-MM-DD/`` imported by the cluster itself.

The client only lists keys; the H2O nodes read the objects in parallel through H2O's own S3
client (endpoint from the JVM properties, credentials handed over at run time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from h2o_tasks import s3
from h2o_tasks.config import S3SourceConfig
from h2o_tasks.errors import InputDataError, SourceNotFoundError

_SKIP = ("_SUCCESS", ".crc", "_committed", "_started")


@dataclass(frozen=True)
class ResolvedInput:
    """The objects an interval maps to."""

    files: tuple[str, ...]
    total_bytes: int
    days_found: tuple[str, ...]
    days_missing: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"files": len(self.files), "bytes": self.total_bytes, "days_found": len(self.days_found),
                "days_missing": list(self.days_missing)}


def days(start: date, end: date) -> list[date]:
    """Every day in ``[start, end)``."""
    return [start + timedelta(days=i) for i in range((end - start).days)]


def partition_uri(uri: str, day: date) -> str:
    return s3.join(uri, f"dt={day.isoformat()}")


def resolve(client: Any, src: S3SourceConfig, start: date, end: date, *, all_required: bool = False) -> ResolvedInput:
    """List the data files of every partition in ``[start, end)``.

    :param all_required: every day must have data (scoring); otherwise at least one (training).
    """
    if end <= start:
        raise InputDataError("interval", f"[{start}, {end})", "is empty", "use an end date after the start date")
    bucket, prefix = s3.split_uri(src.uri)
    suffix = f".{src.format}"
    found: dict[str, list[tuple[str, int]]] = {}
    paginator = client.get_paginator("list_objects_v2")
    base = f"{prefix.rstrip('/')}/" if prefix else ""
    lo, hi = f"{base}dt={start.isoformat()}", f"{base}dt={end.isoformat()}"
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{base}dt=", StartAfter=lo):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key >= hi:
                    break
                day = key[len(base) + 3:].split("/", 1)[0]
                if key.endswith(suffix) and not any(m in key for m in _SKIP) and obj["Size"] > 0:
                    found.setdefault(day, []).append((f"s3://{bucket}/{key}", obj["Size"]))
    except client.exceptions.NoSuchBucket:
        raise SourceNotFoundError("source.s3.uri", src.uri, f"bucket {bucket!r} does not exist",
                                  "create the bucket or fix the URI") from None
    wanted = [d.isoformat() for d in days(start, end)]
    missing = tuple(d for d in wanted if d not in found)
    if len(missing) == len(wanted) or (all_required and missing):
        where = partition_uri(src.uri, date.fromisoformat(missing[0]))
        raise SourceNotFoundError("source.s3.uri", where,
                                  f"no {src.format} files for {len(missing)} of {len(wanted)} day(s) in [{start}, {end})",
                                  "check the bucket, the prefix and the interval (is the partition loaded yet?)")
    files = [f for d in wanted if d in found for f in found[d]]
    return ResolvedInput(files=tuple(u for u, _ in files), total_bytes=sum(n for _, n in files),
                         days_found=tuple(d for d in wanted if d in found), days_missing=missing)


def import_frame(h2o: Any, resolved: ResolvedInput, fmt: str, destination: str,
                 col_types: dict[str, str] | None = None) -> Any:
    """Have the cluster import and parse all files as one frame, in parallel."""
    kwargs: dict[str, Any] = {"destination_frame": destination}
    if fmt == "csv":
        kwargs.update(header=1, col_types=col_types or None, na_strings=["NA", ""])
    frame = h2o.import_file(path=list(resolved.files), **kwargs)
    if frame.nrows == 0:
        raise InputDataError("interval", f"{resolved.days_found[0]}..{resolved.days_found[-1]}",
                             "the partition files hold no rows", "check the upstream job that writes them")
    return frame

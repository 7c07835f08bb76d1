"""Publishing one output partition on S3: immutable attempts, switched by a manifest written by compare-and-swap.

A partition ``{output_uri}/dt=YYYY-MM-DD/`` holds:

- ``_attempts/<attempt>/``: what one writing attempt wrote (its part files). An attempt is
  never written by anyone else and never changes.
- ``_manifest.json``: which attempt readers read, with its files and row count. It is
  replaced only with ``If-Match`` on the ETag it was read with, so readers move from one
  complete attempt to another in one step; the later of two committers wins, whole.
- ``_SUCCESS``: created with the first commit, for tools that wait for a marker before
  reading the manifest.

A replaced attempt stays for ``retain_minutes`` (readers still on it), then the next commit of
the partition removes it; an attempt never committed (its writer died) is removed once its
newest object is older than the orphan age (by the store's clock, not the writer's). A writer
checks after its switch that its attempt is still whole, and switches back if it is not.
Names beginning with ``_`` are hidden from Spark, Hive and H2O listings of the output prefix,
so no reader lists two attempts at once.

A partition written before this layout (part files directly under ``dt=DAY/``) is read as it
is until its first commit, which retires those files like an attempt (:data:`LEGACY`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from h2o_tasks import naming, s3
from h2o_tasks.errors import CommitError, PreconditionError

ATTEMPTS = "_attempts"
MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
LEGACY = "legacy"  # the retired entry of the part files an earlier release wrote directly into the partition
MAX_SWAP_ATTEMPTS = 5
_STAMP = "%Y%m%dT%H%M%S"


@dataclass(frozen=True)
class Attempt:
    """One writing attempt of one partition."""

    root: str  # {output_uri}/dt=YYYY-MM-DD
    id: str

    @property
    def uri(self) -> str:
        return s3.join(self.root, ATTEMPTS, self.id)

    @property
    def started_at(self) -> datetime:
        return started_at(self.id)


@dataclass(frozen=True)
class Retired:
    attempt: str
    location: str
    hive_location: str | None
    retired_at: str


@dataclass(frozen=True)
class Manifest:
    """What ``_manifest.json`` says: the committed attempt of the partition."""

    partition: str
    attempt: str
    location: str
    files: list[dict[str, Any]]
    rows: int
    committed_at: str
    generation: int
    model_version: str = ""
    run_id: str = ""
    hive_table: str | None = None
    hive_location: str | None = None
    retired: list[Retired] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        return cls(**{**raw, "retired": [Retired(**r) for r in raw.get("retired", [])]})


def new_attempt(root: str, run_id: str, now: datetime | None = None) -> Attempt:
    """``<UTC start>-<run hash>-<random>``: sortable by start, unique to this attempt of this run."""
    stamp = (now or datetime.now(UTC)).strftime(_STAMP)
    return Attempt(root, f"{stamp}-{naming.run_hash('attempt', run_id)}-{secrets.token_hex(4)}")


def started_at(attempt_id: str) -> datetime:
    return datetime.strptime(attempt_id.split("-", 1)[0], _STAMP).replace(tzinfo=UTC)


def read_manifest(client: Any, root: str) -> tuple[Manifest | None, str | None]:
    found = s3.read_with_etag(client, s3.join(root, MANIFEST))
    if found is None:
        return None, None
    return Manifest.from_dict(json.loads(found[0])), found[1]


def switch(client: Any, attempt: Attempt, make: Callable[[Manifest | None], Manifest],
           max_attempts: int = MAX_SWAP_ATTEMPTS, absent: bool = False) -> tuple[Manifest, Manifest | None]:
    """Point the partition's manifest at ``attempt`` by compare-and-swap; (new manifest, the one it replaced).

    ``make`` builds the new manifest from the current one (its generation, its retired list).
    A lost race reads again: the later committer replaces the earlier one whole.

    :param absent: a listing just saw no manifest: the first round creates it without reading
        (``If-None-Match``); one that appeared meanwhile fails that condition and is read.
    """
    pending: tuple[Manifest, Manifest | None] | None = None
    for round_ in range(max_attempts):
        current, etag = (None, None) if absent and round_ == 0 else read_manifest(client, attempt.root)
        if pending is not None and current == pending[0]:  # our swap went through; its response was lost
            return pending
        new = make(current)
        pending = (new, current)
        try:
            s3.swap_bytes(client, s3.join(attempt.root, MANIFEST), json.dumps(new.to_dict(), indent=2).encode(), etag)
        except PreconditionError:
            continue
        return new, current
    raise PreconditionError(s3.join(attempt.root, MANIFEST), f"compare-and-swap, {max_attempts} attempts")


def retire(current: Manifest | None, now: datetime, keep_for: timedelta) -> list[Retired]:
    """The retired list of the next manifest: the current attempt, and earlier ones still within the grace."""
    if current is None:
        return []
    keep = [r for r in current.retired if datetime.fromisoformat(r.retired_at) > now - 2 * keep_for]
    return [*keep, Retired(current.attempt, current.location, current.hive_location, now.isoformat())]


def ensure_marker(client: Any, root: str, exists: bool | None = None) -> None:
    """The partition's ``_SUCCESS`` (created once; it never goes away, a committed output always exists).

    :param exists: whether a listing just saw it (asked for when not given).
    """
    marker = s3.join(root, SUCCESS)
    if exists is None:
        exists = s3.head(client, marker) is not None
    if not exists:
        with contextlib.suppress(PreconditionError):
            s3.create_bytes(client, marker, b"")


@dataclass(frozen=True)
class Listing:
    """Every object of a partition, listed once: each attempt's newest write (the store's clock) and its
    part files, an earlier release's part files, and whether ``_manifest.json`` and ``_SUCCESS`` exist."""

    ages: dict[str, datetime]
    files: dict[str, list[dict[str, Any]]]
    marker: bool
    manifest: bool = False
    legacy: list[dict[str, Any]] = field(default_factory=list)

    def landed(self, attempt: Attempt) -> list[dict[str, Any]]:
        """The attempt's part files as the listing saw them (uri, size, ETag), by name.

        :raises CommitError: the attempt holds no part file.
        """
        if not (files := self.files.get(attempt.id)):
            raise CommitError("predictions", attempt.uri, "holds no output after the write",
                              "retry the task; if it repeats, check the scoring step's log")
        return sorted(files, key=lambda f: f["uri"])


def _part(name: str) -> bool:
    return not name.startswith(("_", ".")) and not name.endswith(".crc")


def list_attempts(client: Any, root: str) -> Listing:
    bucket, key = s3.split_uri(root)
    prefix = key.rstrip("/") + "/"
    attempts = ATTEMPTS + "/"
    ages: dict[str, datetime] = {}
    files: dict[str, list[dict[str, Any]]] = {}
    legacy: list[dict[str, Any]] = []
    marker = manifest = False
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):]
            found = {"uri": f"s3://{bucket}/{obj['Key']}", "size": obj["Size"], "etag": obj["ETag"]}
            marker = marker or rel == SUCCESS
            manifest = manifest or rel == MANIFEST
            if "/" not in rel and _part(rel):
                legacy.append(found)
            if not rel.startswith(attempts):
                continue
            attempt, _, name = rel[len(attempts):].partition("/")
            ages[attempt] = max(ages.get(attempt, obj["LastModified"]), obj["LastModified"])
            if _part(name):
                files.setdefault(attempt, []).append(found)
    return Listing(ages, files, marker, manifest, legacy)


def attempt_ages(client: Any, root: str) -> dict[str, datetime]:
    """Every attempt that wrote anything under the partition, with its newest object's time (the store's clock)."""
    return list_attempts(client, root).ages


def removable(manifest: Manifest, ages: dict[str, datetime], now: datetime, retain: timedelta,
              orphan_age: timedelta) -> list[str]:
    """Attempts to remove: retired longer than ``retain`` ago, or never committed and not written to
    for ``orphan_age`` (``ages``: each attempt's newest object time). The committed one never."""
    retired = {r.attempt: datetime.fromisoformat(r.retired_at) for r in manifest.retired}
    out = []
    for attempt in sorted(set(ages) | ({LEGACY} & set(retired))):
        if attempt == manifest.attempt:
            continue
        if attempt in retired:
            if retired[attempt] <= now - retain:
                out.append(attempt)
        elif ages[attempt] <= now - orphan_age:
            out.append(attempt)
    return out


def legacy_files(client: Any, root: str) -> list[dict[str, Any]]:
    """Part files directly under the partition (an earlier release's layout), with size and ETag."""
    bucket, key = s3.split_uri(root)
    prefix = key.rstrip("/") + "/"
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for obj in page.get("Contents", []):
            if _part(obj["Key"][len(prefix):]):
                out.append({"uri": f"s3://{bucket}/{obj['Key']}", "size": obj["Size"], "etag": obj["ETag"]})
    return out


def committed_files(client: Any, root: str) -> list[str]:
    """What a reader of the partition reads: the files of the attempt its manifest names; before the
    first commit, an earlier release's part files if its ``_SUCCESS`` says they are complete."""
    manifest, _ = read_manifest(client, root)
    if manifest is not None:
        return [f["uri"] for f in manifest.files]
    if s3.head(client, s3.join(root, SUCCESS)) is None:
        return []
    return [f["uri"] for f in legacy_files(client, root)]

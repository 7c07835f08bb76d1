"""S3 settings and small object-store helpers (boto3).

Credentials live in :class:`S3Settings` only in memory: they are handed to H2O at run time
(``h2o.persist.set_s3_credentials``) and to boto3, never written into a file, manifest or log.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from h2o_tasks.commit_queue import COMMIT_THREADS
from h2o_tasks.errors import PreconditionError, SourceNotFoundError

T = TypeVar("T")


@dataclass(frozen=True)
class S3Settings:
    """How to reach the object store. An empty ``endpoint_url`` means AWS itself."""

    endpoint_url: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    region: str = "us-east-1"
    # temporary credentials (assume-role, web identity, instance profile): their token, and when they end
    session_token: str = field(default="", repr=False)
    expires_at: datetime | None = None

    def expires_within(self, margin: timedelta, now: datetime | None = None) -> bool:
        """True for temporary credentials that end within ``margin`` of ``now``."""
        return self.expires_at is not None and self.expires_at - (now or datetime.now(UTC)) <= margin

    @property
    def secrets(self) -> list[str]:
        """What must never be logged or saved (for masking)."""
        return [v for v in (self.secret_key, self.session_token) if v]

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            aws_access_key_id=self.access_key or None,
            aws_secret_access_key=self.secret_key or None,
            aws_session_token=self.session_token or None,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                          max_pool_connections=POOL_CONNECTIONS),
        )

    def jvm_properties(self) -> list[str]:
        """``-D`` flags that point H2O's own S3 client at this endpoint (no secrets)."""
        if not self.endpoint_url:
            return []
        return [f"-Dsys.ai.h2o.persist.s3.endPoint={self.endpoint_url}",
                "-Dsys.ai.h2o.persist.s3.enable.path.style=true",
                f"-Dsys.ai.h2o.persist.s3.region={self.region}"]


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a", "s3n") or not parsed.netloc:
        raise SourceNotFoundError("uri", uri, "is not an s3:// URI", "write it as s3://BUCKET/KEY")
    return parsed.netloc, parsed.path.lstrip("/")


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def _bucket_named(fn: Callable[..., T]) -> Callable[..., T]:
    """A missing bucket as the engine's SourceNotFoundError naming it (not retried: no retry creates it)."""

    @functools.wraps(fn)
    def wrapper(client: Any, *args: Any, **kwargs: Any) -> T:
        try:
            return fn(client, *args, **kwargs)
        except Exception as exc:
            if _code(exc) != "NoSuchBucket":
                raise
            uri = next((a for a in (*args, *kwargs.values()) if isinstance(a, str) and a.startswith("s3://")), "")
            raise SourceNotFoundError("bucket", split_uri(uri)[0] if uri else "", "does not exist",
                                      "create the bucket or fix the URI") from None

    return wrapper


def list_keys(client: Any, uri: str) -> list[str]:
    """Every key under a prefix (paginated), as full ``s3://`` URIs, sorted."""
    bucket, prefix = split_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    keys: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", []))
    except client.exceptions.NoSuchBucket:
        raise SourceNotFoundError("bucket", bucket, "does not exist", "create the bucket or fix the URI") from None
    return sorted(keys)


@_bucket_named
def delete_prefix(client: Any, uri: str) -> int:
    keys = list_keys(client, uri)
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        bucket = split_uri(chunk[0])[0]
        resp = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": split_uri(k)[1]} for k in chunk]})
        if resp.get("Errors"):
            first = resp["Errors"][0]
            raise RuntimeError(f"deleting under {uri} failed for {len(resp['Errors'])} object(s), e.g. "
                               f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}")
    return len(keys)


COPY_PART_BYTES = 64 * 1024 * 1024


@_bucket_named
def copy(client: Any, src_uri: str, dest_uri: str) -> None:
    """Server-side copy of one object of any size.

    boto3's managed copy: one CopyObject up to ``COPY_PART_BYTES``, a multipart copy
    (UploadPartCopy) above it; a single CopyObject stops at 5 GB.
    """
    from boto3.s3.transfer import TransferConfig

    part_bytes = COPY_PART_BYTES
    src_bucket, src_key = split_uri(src_uri)
    bucket, key = split_uri(dest_uri)
    client.copy({"Bucket": src_bucket, "Key": src_key}, bucket, key,
                Config=TransferConfig(multipart_threshold=part_bytes, multipart_chunksize=part_bytes, max_concurrency=4))


@_bucket_named
def read_bytes(client: Any, uri: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    bucket, key = split_uri(uri)
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


@_bucket_named
def write_bytes(client: Any, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    """One PUT: the object appears whole or not at all."""
    bucket, key = split_uri(uri)
    client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


# ---------------------------------------------------------------- conditional writes
#
# S3 (and the moto server of the tests) honour ``If-None-Match: *`` on PutObject and
# CompleteMultipartUpload, and ``If-Match: <etag>`` on PutObject. The losing writer gets 412
# PreconditionFailed, and an ``If-Match`` on a missing key gets NoSuchKey: both mean "another
# writer got there first". AWS answers 409 ConditionalRequestConflict while a competing
# conditional write is in flight: that one is retried. botocore retries a request whose
# response was lost; when the lost request had been applied, its retry gets 412 for the
# writer's own object, so a lost create is read back and compared before it counts as lost.
# CopyObject has no destination condition: write-once objects are uploaded, never copied.

# above this a conditional create goes multipart, in parts of this size, as boto3's upload_file does
PART_BYTES = 8 * 1024 * 1024
PART_THREADS = 10
# one client serves the commit queue's partitions at once, each sent in up to PART_THREADS parts:
# with boto3's default pool (10) the extra connections were opened, then dropped ("pool is full")
POOL_CONNECTIONS = COMMIT_THREADS * PART_THREADS
_LOST = ("PreconditionFailed", "NoSuchKey", "412")
_IN_FLIGHT = ("ConditionalRequestConflict", "409")
_IN_FLIGHT_RETRIES = 5


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _conditional(put: Callable[[], dict[str, Any]], uri: str, condition: str) -> dict[str, Any]:
    """Run a conditional write; 409 (another conditional write in flight) is retried, 412 raises."""
    for attempt in range(_IN_FLIGHT_RETRIES):
        try:
            return put()
        except Exception as exc:
            code = _code(exc)
            if code in _LOST:
                raise PreconditionError(uri, condition) from None
            if code not in _IN_FLIGHT or attempt == _IN_FLIGHT_RETRIES - 1:
                raise
            time.sleep(0.1 * 2 ** attempt)
    raise AssertionError("unreachable")


@_bucket_named
def read_with_etag(client: Any, uri: str) -> tuple[bytes, str] | None:
    """The object's bytes and ETag (for a later ``If-Match``), or None when it does not exist."""
    bucket, key = split_uri(uri)
    try:
        resp = client.get_object(Bucket=bucket, Key=key)
    except client.exceptions.NoSuchKey:
        return None
    return resp["Body"].read(), resp["ETag"]


@_bucket_named
def create_bytes(client: Any, uri: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    """Create the object only if no object has that key (``If-None-Match: *``); its ETag.

    :raises PreconditionError: the key holds other bytes (another writer created it first).
    """
    bucket, key = split_uri(uri)
    try:
        return _conditional(lambda: client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                                                      IfNoneMatch="*"), uri, "If-None-Match: *")["ETag"]
    except PreconditionError:
        found = read_with_etag(client, uri)
        if found is not None and found[0] == data:  # our own create, whose response was lost
            return found[1]
        raise


@_bucket_named
def swap_bytes(client: Any, uri: str, data: bytes, etag: str | None,
               content_type: str = "application/json") -> str:
    """Replace the object only if it still has ``etag`` (None: only if it does not exist yet); the new ETag.

    :raises PreconditionError: the object changed (or appeared, or went) since it was read;
        the caller reads it again (and may find its own write there, see the registry and commit).
    """
    if etag is None:
        return create_bytes(client, uri, data, content_type)
    bucket, key = split_uri(uri)
    return _conditional(lambda: client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                                                  IfMatch=etag), uri, f"If-Match: {etag}")["ETag"]


def _multipart_etag(part_etags: list[str]) -> str:
    """The ETag S3 gives a multipart object: the MD5 of the parts' MD5s, then ``-<parts>``."""
    digest = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in part_etags), usedforsecurity=False)
    return f'"{digest.hexdigest()}-{len(part_etags)}"'


@_bucket_named
def create_file(client: Any, path: Path, uri: str, content_type: str = "application/octet-stream") -> str:
    """Upload a local file only if no object has that key; its ETag.

    Up to :data:`PART_BYTES` one conditional PutObject; above it a multipart upload whose
    completion carries the condition (parts in :data:`PART_THREADS` threads), aborted if anything fails.
    """
    size = Path(path).stat().st_size
    if size <= PART_BYTES:
        return create_bytes(client, uri, Path(path).read_bytes(), content_type)
    bucket, key = split_uri(uri)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)["UploadId"]

    def part(number: int) -> dict[str, Any]:
        with open(path, "rb") as f:
            f.seek((number - 1) * PART_BYTES)
            body = f.read(PART_BYTES)
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)["ETag"]
        return {"PartNumber": number, "ETag": etag}

    try:
        with ThreadPoolExecutor(max_workers=PART_THREADS) as pool:
            parts = list(pool.map(part, range(1, (size + PART_BYTES - 1) // PART_BYTES + 1)))
        try:
            return _conditional(lambda: client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"),
                uri, "If-None-Match: *")["ETag"]
        except PreconditionError:
            found = head(client, uri)
            with contextlib.suppress(Exception):  # gone already when it was our own completion
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            if found and found["size"] == size and found["etag"] == _multipart_etag([p["ETag"] for p in parts]):
                return found["etag"]  # our own completion, whose response was lost
            raise
    except BaseException:
        with contextlib.suppress(Exception):  # the original error matters; an open upload expires by lifecycle
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


@_bucket_named
def head(client: Any, uri: str) -> dict[str, Any] | None:
    """The object's size and ETag, or None when it does not exist."""
    bucket, key = split_uri(uri)
    try:
        resp = client.head_object(Bucket=bucket, Key=key)
    except client.exceptions.ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return {"size": resp["ContentLength"], "etag": resp["ETag"]}

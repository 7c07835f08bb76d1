"""The model registry on S3: write-once versions, a champion moved by compare-and-swap, append-only history.

Layout under ``registry_uri``:

- ``versions/{version}/``: one version per export attempt (the id ends with a random token),
  every object created with ``If-None-Match: *``, ``metadata.json`` last with the SHA-256 of
  every artifact. A version is complete when its metadata exists, and never changes after.
- ``champion.json``: the pointer. It is replaced only with ``If-Match`` on the ETag it was
  read with (``If-None-Match: *`` for the first one); a writer that loses re-reads, re-gates
  and tries again, a bounded number of times.
- ``history/{generation:08d}-{version}.json``: one record per promotion or rollback, created
  once. ``generation`` counts the pointer's changes, so two records never share a key.
  A writer records the pointer it read before replacing it, so a writer killed between its
  swap and its own record leaves the record to the next writer (or to ``history``).

Promotion policy: a run whose data interval ends before the current champion's never
replaces it (``quality_gate.allow_older_interval`` allows it). A pointer written before
intervals were recorded has none and counts as older than any run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import secrets
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from h2o_tasks import naming, s3, testhooks
from h2o_tasks.config import METRICS_HIGHER_IS_BETTER, QualityGateConfig
from h2o_tasks.errors import PreconditionError, RegistryError, SourceNotFoundError

CHAMPION = "champion.json"
METADATA = "metadata.json"
MODEL = "model.zip"
MAX_SWAP_ATTEMPTS = 5
CONTENT_TYPES = {".json": "application/json", ".html": "text/html", ".png": "image/png", ".java": "text/x-java",
                 ".zip": "application/zip", ".jar": "application/java-archive"}


@dataclass(frozen=True)
class ChampionPointer:
    """What ``champion.json`` holds. ``interval_end`` None: written before intervals were recorded."""

    version: str
    metric: str
    value: float
    promoted_at: str
    run_id: str = ""
    interval_start: str | None = None
    interval_end: str | None = None
    generation: int = 0
    previous: str | None = None
    action: str = "promote"
    reason: str = ""
    model_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ChampionPointer:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


@dataclass(frozen=True)
class Candidate:
    """A complete version offered for promotion, with the data interval it was trained for."""

    version: str
    metrics: dict[str, float]
    interval_start: str
    interval_end: str
    model_sha256: str
    run_id: str = ""


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class PromotionResult:
    """The gate's last decision, the pointer this step wrote (if any) and the champion after the step."""

    decision: GateDecision
    pointer: ChampionPointer | None
    champion: ChampionPointer | None
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return {"promoted": self.decision.promote, "reason": self.decision.reason, "attempts": self.attempts,
                "champion": self.champion.to_dict() if self.champion else None,
                "generation": self.pointer.generation if self.pointer else None}


@dataclass(frozen=True)
class VersionInfo:
    version: str
    complete: bool
    objects: int
    created_at: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    interval: str = ""


# ---------------------------------------------------------------- names


def version_id(logical_date: datetime | None, run_id: str, try_number: int | None = None) -> str:
    """Sortable by logical date, unique per export attempt: ``20130204T000000-<run hash>-t<try>-<random>``.

    The random part makes a retry, a zombie of the previous try and a cleared and re-run DAG
    run each write a version of their own, never another attempt's.
    """
    stamp = (logical_date or datetime(1970, 1, 1, tzinfo=UTC)).strftime("%Y%m%dT%H%M%S")
    attempt = f"t{try_number}-" if try_number else ""
    return f"{stamp}-{naming.run_hash('version', run_id)}-{attempt}{secrets.token_hex(4)}"


def version_uri(registry_uri: str, version: str) -> str:
    return s3.join(registry_uri, "versions", version)


def _history_uri(registry_uri: str, pointer: ChampionPointer) -> str:
    return s3.join(registry_uri, "history", f"{pointer.generation:08d}-{pointer.version}.json")


# ---------------------------------------------------------------- versions


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_version(client: Any, registry_uri: str, version: str, directory: Path, metadata: dict[str, Any]) -> list[str]:
    """Upload every file of ``directory`` as version ``version``, then ``metadata.json`` with their digests.

    Each object is created only if its key is free, so nothing of another attempt is ever
    replaced. Returns the file names, ``metadata.json`` last.
    """
    uri = version_uri(registry_uri, version)
    files = sorted(p for p in Path(directory).iterdir() if p.is_file() and p.name != METADATA)
    digests = {p.name: sha256_file(p) for p in files}

    def put(p: Path) -> None:
        s3.create_file(client, p, s3.join(uri, p.name), CONTENT_TYPES.get(p.suffix, "application/octet-stream"))

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(put, files))
    testhooks.checkpoint("export:before-metadata")
    body = {**metadata, "version": version, "digests": digests, "model_sha256": digests.get(MODEL, ""),
            "files": [*digests, METADATA]}
    s3.create_bytes(client, s3.join(uri, METADATA), json.dumps(body, indent=2, default=str).encode(),
                    "application/json")
    return [*digests, METADATA]


def load_metadata(client: Any, registry_uri: str, version: str) -> dict[str, Any]:
    raw = s3.read_bytes(client, s3.join(version_uri(registry_uri, version), METADATA))
    if raw is None:
        raise SourceNotFoundError("registry_uri", version_uri(registry_uri, version),
                                  "has no metadata.json (an incomplete or deleted version)",
                                  "promote a complete version or re-run the training DAG")
    return json.loads(raw)


def verify_model(path: Path, metadata: dict[str, Any], version: str) -> str:
    """Check a downloaded ``model.zip`` against the digest its version recorded; the digest.

    :raises RegistryError: no digest recorded (a version exported before digests were) or a
        mismatch (the object was replaced or corrupted): the model is not loaded.
    """
    expected = metadata.get("model_sha256") or (metadata.get("digests") or {}).get(MODEL)
    if not expected:
        raise RegistryError(f"versions/{version}/metadata.json", None, "records no SHA-256 of model.zip, so the "
                            "model cannot be checked before it is loaded",
                            "re-run the training DAG to export a version with digests, then promote it")
    actual = sha256_file(path)
    if actual != expected:
        raise RegistryError(f"versions/{version}/{MODEL}", actual, f"does not match the SHA-256 {expected} that its "
                            "metadata.json recorded (the object was replaced or corrupted)",
                            "roll the champion back to an intact version (python -m h2o_tasks registry rollback)")
    return actual


def list_versions(client: Any, registry_uri: str) -> list[VersionInfo]:
    """Every version under the registry, oldest first, complete or not."""
    prefix = version_uri(registry_uri, "")
    by_version: dict[str, list[str]] = {}
    for key in s3.list_keys(client, prefix):
        by_version.setdefault(key[len(prefix):].split("/", 1)[0], []).append(key)
    out = []
    for version, keys in sorted(by_version.items()):
        if not any(k.endswith("/" + METADATA) for k in keys):
            out.append(VersionInfo(version, False, len(keys)))
            continue
        meta = load_metadata(client, registry_uri, version)
        lineage = meta.get("lineage") or {}
        interval = f"[{lineage.get('interval_start')}, {lineage.get('interval_end')})" if lineage.get("interval_end") else ""
        out.append(VersionInfo(version, True, len(keys), meta.get("created_at", ""), meta.get("metrics") or {}, interval))
    return out


# ---------------------------------------------------------------- the gate


def _is_number(value: Any) -> bool:
    """A finite int or float: NaN, None and infinities compare as neither better nor worse."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def gate(cfg: QualityGateConfig, metrics: dict[str, float], champion: ChampionPointer | None) -> GateDecision:
    """Promote when the metric passes the threshold and is no worse than the champion by more than the margin.

    A metric that is not a finite number (NaN, None) is never promoted, and neither is a
    model compared with a champion whose recorded value is not a number.
    """
    if cfg.metric not in metrics:
        return GateDecision(False, f"{cfg.metric} was not computed for this model")
    value = metrics[cfg.metric]
    if not _is_number(value):
        return GateDecision(False, f"{cfg.metric}={value!r} is not a number: the model cannot be judged")
    higher = METRICS_HIGHER_IS_BETTER[cfg.metric]
    passes = value >= cfg.threshold if higher else (cfg.threshold <= 0 or value <= cfg.threshold)
    if not passes:
        return GateDecision(False, f"{cfg.metric}={value:.4f} misses the threshold {cfg.threshold}")
    if champion is None or champion.metric != cfg.metric:
        return GateDecision(True, f"{cfg.metric}={value:.4f} passes {cfg.threshold}; no comparable champion")
    if not _is_number(champion.value):
        return GateDecision(False, f"{cfg.metric}={value:.4f} cannot be compared with the champion {champion.version}: "
                                   f"its recorded {champion.metric} is {champion.value!r}; roll the champion back to a "
                                   "version with a recorded value (python -m h2o_tasks registry rollback --to VERSION)")
    worse_by = (champion.value - value) if higher else (value - champion.value)
    if worse_by > cfg.max_regression:
        return GateDecision(False, f"{cfg.metric}={value:.4f} is worse than the champion {champion.version} "
                                   f"({champion.value:.4f}) by {worse_by:.4f} > {cfg.max_regression}")
    return GateDecision(True, f"{cfg.metric}={value:.4f} vs champion {champion.value:.4f} "
                              f"(margin {cfg.max_regression})")


def decide(cfg: QualityGateConfig, candidate: Candidate, champion: ChampionPointer | None) -> GateDecision:
    """The promotion policy on intervals, then the metric gate."""
    if champion is not None and champion.version == candidate.version:
        return GateDecision(False, f"{candidate.version} is the champion already")
    if (champion is not None and champion.interval_end and not cfg.allow_older_interval
            and candidate.interval_end < champion.interval_end):
        return GateDecision(False, f"this run's data interval ends {candidate.interval_end}, before the champion "
                                   f"{champion.version}'s ({champion.interval_end}): an older interval never "
                                   "replaces a newer champion (quality_gate.allow_older_interval: true allows it)")
    return gate(cfg, candidate.metrics, champion)


# ---------------------------------------------------------------- the pointer


def read_champion(client: Any, registry_uri: str) -> ChampionPointer | None:
    return read_champion_tagged(client, registry_uri)[0]


def read_champion_tagged(client: Any, registry_uri: str) -> tuple[ChampionPointer | None, str | None]:
    """The champion pointer and the ETag to swap it with (None, None before the first promotion)."""
    found = s3.read_with_etag(client, s3.join(registry_uri, CHAMPION))
    if found is None:
        return None, None
    return ChampionPointer.from_dict(json.loads(found[0])), found[1]


def _record(client: Any, registry_uri: str, pointer: ChampionPointer | None) -> None:
    """Create the history record of ``pointer`` unless it exists (records are never replaced).

    :raises RegistryError: a different record holds that generation already (the history and
        the pointer disagree; nothing is overwritten).
    """
    if pointer is None or pointer.generation == 0:  # generation 0: written before this protocol, recorded then
        return
    uri = _history_uri(registry_uri, pointer)
    try:
        s3.create_bytes(client, uri, json.dumps(pointer.to_dict(), indent=2).encode(), "application/json")
    except PreconditionError:
        found = ChampionPointer.from_dict(json.loads(s3.read_bytes(client, uri) or b"{}"))
        if found != pointer:
            raise RegistryError(uri, found.promoted_at, f"records another promotion of generation {pointer.generation} "
                                f"than champion.json ({pointer.promoted_at})",
                                "restore champion.json from the history's latest record") from None


def _next_generation(client: Any, registry_uri: str, current: ChampionPointer | None) -> int:
    """One more than the pointer's, or than the history's highest when the pointer is missing."""
    if current is not None:
        return current.generation + 1
    prefix = s3.join(registry_uri, "history") + "/"
    generations = [int(k[len(prefix):][:8]) for k in s3.list_keys(client, prefix) if k[len(prefix):][:8].isdigit()]
    return max(generations, default=0) + 1


def _swap(client: Any, registry_uri: str, make: Callable[[ChampionPointer | None], ChampionPointer | GateDecision],
          max_attempts: int) -> tuple[ChampionPointer | GateDecision, ChampionPointer | None, int]:
    """Read, decide, write with the ETag read; on a lost race read again. ``make`` returns the new
    pointer, or a decision not to write."""
    pending: ChampionPointer | None = None
    for attempt in range(1, max_attempts + 1):
        current, etag = read_champion_tagged(client, registry_uri)
        if pending is not None and current == pending:  # our swap went through; its response was lost
            _record(client, registry_uri, pending)
            return pending, pending, attempt
        _record(client, registry_uri, current)
        new = make(current)
        if isinstance(new, GateDecision):
            return new, current, attempt
        testhooks.checkpoint("registry:before-cas")
        pending = new
        try:
            s3.swap_bytes(client, s3.join(registry_uri, CHAMPION), json.dumps(new.to_dict(), indent=2).encode(), etag)
        except PreconditionError:
            continue
        _record(client, registry_uri, new)
        return new, new, attempt
    raise PreconditionError(s3.join(registry_uri, CHAMPION), f"compare-and-swap, {max_attempts} attempts")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def promote(client: Any, registry_uri: str, cfg: QualityGateConfig, candidate: Candidate, *,
            max_attempts: int = MAX_SWAP_ATTEMPTS) -> PromotionResult:
    """Gate ``candidate`` against the champion and, if it passes, make it the champion by compare-and-swap.

    Only a complete version is promoted. A lost race re-reads the pointer and gates again
    against the new champion, so two runs that both pass never both win blindly.
    """
    load_metadata(client, registry_uri, candidate.version)
    decisions: list[GateDecision] = []

    def make(current: ChampionPointer | None) -> ChampionPointer | GateDecision:
        decision = decide(cfg, candidate, current)
        decisions.append(decision)
        if not decision.promote:
            return decision
        return ChampionPointer(candidate.version, cfg.metric, float(candidate.metrics[cfg.metric]), _now(),
                               candidate.run_id, candidate.interval_start, candidate.interval_end,
                               _next_generation(client, registry_uri, current), current.version if current else None,
                               "promote", decision.reason, candidate.model_sha256)

    outcome, champion, attempts = _swap(client, registry_uri, make, max_attempts)
    if isinstance(outcome, GateDecision):
        return PromotionResult(outcome, None, champion, attempts)
    return PromotionResult(decisions[-1], outcome, champion, attempts)


def history(client: Any, registry_uri: str) -> list[ChampionPointer]:
    """Every promotion and rollback, oldest first (the current pointer's record is made if missing)."""
    _record(client, registry_uri, read_champion(client, registry_uri))
    out = []
    for key in s3.list_keys(client, s3.join(registry_uri, "history")):
        try:
            out.append(ChampionPointer.from_dict(json.loads(s3.read_bytes(client, key) or b"")))
        except (ValueError, TypeError):  # not a record of this registry (a stray or truncated object)
            continue
    return sorted(out, key=lambda p: (p.generation, p.promoted_at))


def _previous_champion(records: list[ChampionPointer]) -> str | None:
    """The version a plain "roll back" returns to: replay the history as a stack (a promotion
    pushes, a rollback pops back to its target), then the version under the current one."""
    stack: list[str] = []
    for r in records:
        if r.action == "rollback" and r.version in stack:
            del stack[stack.index(r.version) + 1:]
        else:
            stack.append(r.version)
    return stack[-2] if len(stack) > 1 else None


def rollback(client: Any, registry_uri: str, to_version: str | None = None, *, reason: str = "",
             max_attempts: int = MAX_SWAP_ATTEMPTS) -> ChampionPointer:
    """Point the champion back at ``to_version`` (default: the champion before the current one).

    The same compare-and-swap as a promotion; no gate (a person decided). The target must be
    a complete version whose ``model.zip`` still matches its digest and that records the
    champion's gate metric. If the champion changes while this runs, nothing is written.
    """
    current = read_champion(client, registry_uri)
    if current is None:
        raise RegistryError("champion.json", None, "does not exist: there is nothing to roll back",
                            "promote a version first (run the training DAG)")
    target = to_version or _previous_champion(history(client, registry_uri))
    if not target:
        raise RegistryError("--to", None, f"has no default: the champion {current.version} has no predecessor",
                            "name the version to roll back to (python -m h2o_tasks registry list)")
    meta = load_metadata(client, registry_uri, target)
    value = (meta.get("metrics") or {}).get(current.metric)
    if not _is_number(value):  # the gate compares every later model with this value
        raise RegistryError("--to", target, f"records no {current.metric} (the quality gate's metric), so later "
                            "models could not be compared with it", "roll back to a version that records it")
    bucket, key = s3.split_uri(s3.join(version_uri(registry_uri, target), MODEL))
    with tempfile.TemporaryDirectory(prefix="h2o-rollback-") as tmp:
        local = Path(tmp) / MODEL
        client.download_file(bucket, key, str(local))
        digest = verify_model(local, meta, target)
    lineage = meta.get("lineage") or {}

    def make(now: ChampionPointer | None) -> ChampionPointer:
        if now is None or now.generation != current.generation:
            raise RegistryError("champion.json", now.version if now else None,
                                f"changed while rolling back from {current.version}", "look at the history and run it again")
        return ChampionPointer(target, current.metric, float(value), _now(), lineage.get("run_id", ""),
                               lineage.get("interval_start"), lineage.get("interval_end"), now.generation + 1,
                               now.version, "rollback", reason or "rolled back by hand", digest)

    pointer, _, _ = _swap(client, registry_uri, make, max_attempts)
    return pointer

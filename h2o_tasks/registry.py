"""The model registry on S3: versions, the champion pointer, and the quality gate.

Layout: ``{registry_uri}/versions/{version}/`` (artifacts, ``metadata.json`` written last),
``{registry_uri}/champion.json`` (the pointer, replaced by one PUT: atomic), and
``{registry_uri}/history/{promoted_at}-{version}.json`` (an audit trail of promotions).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from h2o_tasks import s3
from h2o_tasks.config import METRICS_HIGHER_IS_BETTER, QualityGateConfig


@dataclass(frozen=True)
class ChampionPointer:
    version: str
    metric: str
    value: float
    promoted_at: str
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def version_uri(registry_uri: str, version: str) -> str:
    return s3.join(registry_uri, "versions", version)


def read_champion(client: Any, registry_uri: str) -> ChampionPointer | None:
    raw = s3.read_bytes(client, s3.join(registry_uri, "champion.json"))
    return ChampionPointer(**json.loads(raw)) if raw else None


def load_metadata(client: Any, registry_uri: str, version: str) -> dict[str, Any]:
    raw = s3.read_bytes(client, s3.join(version_uri(registry_uri, version), "metadata.json"))
    if raw is None:
        from h2o_tasks.errors import SourceNotFoundError

        raise SourceNotFoundError("registry_uri", version_uri(registry_uri, version),
                                  "has no metadata.json (an incomplete or deleted version)",
                                  "promote a complete version or re-run the training DAG")
    return json.loads(raw)


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
                                   f"its recorded {champion.metric} is {champion.value!r}; fix or remove champion.json")
    worse_by = (champion.value - value) if higher else (value - champion.value)
    if worse_by > cfg.max_regression:
        return GateDecision(False, f"{cfg.metric}={value:.4f} is worse than the champion {champion.version} "
                                   f"({champion.value:.4f}) by {worse_by:.4f} > {cfg.max_regression}")
    return GateDecision(True, f"{cfg.metric}={value:.4f} vs champion {champion.value:.4f} "
                              f"(margin {cfg.max_regression})")


def promote(client: Any, registry_uri: str, version: str, metric: str, value: float, run_id: str = "") -> ChampionPointer:
    """Point the champion at ``version`` with one PUT (readers see the old or the new pointer)."""
    if not _is_number(value):
        raise ValueError(f"cannot promote {version}: its {metric} is {value!r}, not a number")
    load_metadata(client, registry_uri, version)  # only complete versions are promoted
    pointer = ChampionPointer(version, metric, float(value), datetime.now(UTC).isoformat(), run_id)
    body = json.dumps(pointer.to_dict(), indent=2).encode()
    s3.write_bytes(client, s3.join(registry_uri, "history", f"{pointer.promoted_at}-{version}.json"), body,
                   "application/json")
    s3.write_bytes(client, s3.join(registry_uri, "champion.json"), body, "application/json")
    return pointer

"""Export a trained model to the registry (MOJO, POJO, genmodel jar, metadata, report) and gate it.

Everything is written to a local directory first, then uploaded as a new, write-once
version of its own (:func:`h2o_tasks.registry.write_version`): each export attempt, a
retry or a re-run included, makes a new version and never changes another one.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from h2o_tasks import registry, report, scratch
from h2o_tasks.config import PipelineConfig, to_dict
from h2o_tasks.train import metrics_of, performance


@dataclass(frozen=True)
class ExportResult:
    version: str
    uri: str
    files: list[str]
    metrics: dict[str, float]
    seconds: float
    model_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExportOutcome:
    """What the export step did: the version it wrote and the promotion's result."""

    export: ExportResult
    promotion: registry.PromotionResult

    def to_dict(self) -> dict[str, Any]:
        return {**self.export.to_dict(), **self.promotion.to_dict()}


def feature_schema(model: Any, cfg: PipelineConfig) -> tuple[list[dict[str, Any]], list[str] | None]:
    """Features with declared types and the categorical domains the model learned; the label's domain."""
    out = model._model_json["output"]
    domains = dict(zip(out["names"], out["domains"], strict=False))
    features = [{"name": f.name, "type": f.type, "domain": domains.get(f.name) if f.type == "enum" else None}
                for f in cfg.features]
    return features, domains.get(cfg.target.label)


def export(h2o: Any, model: Any, cfg: PipelineConfig, client: Any, *, run_id: str, logical_date: datetime | None,
           interval: tuple[date, date] | None = None, try_number: int | None = None,
           lineage: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
           valid_frame: Any = None) -> ExportResult:
    """Export ``model`` and upload it as a new registry version of this attempt.

    :param interval: the run's data interval ``[start, end)``, recorded as the version's lineage
        (the promotion policy compares it with the champion's).
    """
    t0 = time.monotonic()
    version = registry.version_id(logical_date, run_id, try_number)
    uri = registry.version_uri(cfg.registry_uri, version)
    perf = model.model_performance(valid=True) if valid_frame is None else performance(model, valid_frame,
                                                                                        cfg.target.problem)
    if perf is None:
        perf = model.model_performance(xval=True)
    metrics = metrics_of(perf, cfg.target.problem)
    with scratch.directory("h2o-export-") as work:
        mojo = Path(model.download_mojo(path=str(work), get_genmodel_jar=True, genmodel_name="h2o-genmodel.jar"))
        mojo.rename(work / "model.zip")
        pojo, pojo_reason = _download_pojo(h2o, model, work)
        features, label_domain = feature_schema(model, cfg)
        frame, frame_name = (valid_frame, "validation") if valid_frame is not None else _frame_of(h2o, model)
        report_files = report.write(work, model, perf, cfg, metrics, version, frame, frame_name,
                                    review=_review(client, cfg, version, metrics, interval, run_id, lineage, training))
        metadata = {
            "pipeline": cfg.name, "version": version, "model_id": model.model_id, "algo": model.algo,
            "created_at": datetime.now(UTC).isoformat(), "h2o_version": h2o.__version__,
            "metrics": metrics, "metric": cfg.training.metric, "parameters": _params(model),
            "features": features, "target": {"column": cfg.target.column, "label": cfg.target.label,
                                             "problem": cfg.target.problem, "threshold": cfg.target.threshold,
                                             "domain": label_domain,
                                             "prediction_columns": _prediction_columns(h2o, model, frame, cfg,
                                                                                       label_domain)},
            "lineage": {"run_id": run_id, "logical_date": logical_date.isoformat() if logical_date else None,
                        "try_number": try_number,
                        "interval_start": interval[0].isoformat() if interval else None,
                        "interval_end": interval[1].isoformat() if interval else None, **(lineage or {})},
            "training": training or {}, "pipeline_config": to_dict(cfg),
            "pojo": pojo, "pojo_unavailable_reason": pojo_reason,
            "report": report_files,
        }
        model_sha256 = registry.sha256_file(work / registry.MODEL)
        files = registry.write_version(client, cfg.registry_uri, version, work, metadata)
    return ExportResult(version=version, uri=uri, files=files, metrics=metrics,
                        seconds=round(time.monotonic() - t0, 2), model_sha256=model_sha256)


def _review(client: Any, cfg: PipelineConfig, version: str, metrics: dict[str, float], interval: tuple[date, date] | None,
            run_id: str, lineage: dict[str, Any] | None, training: dict[str, Any] | None) -> report.Review:
    """The report's view of the gate: the policy and the gate against the champion as it is at export."""
    champion = registry.read_champion(client, cfg.registry_uri)
    decision = None
    if interval is not None:
        decision = registry.decide(cfg.quality_gate, registry.Candidate(
            version, metrics, interval[0].isoformat(), interval[1].isoformat(), "", run_id), champion)
    training = training or {}
    return report.Review(decision=decision, champion=champion, metric=cfg.quality_gate.metric,
                         leaderboard=training.get("leaderboard"), training_metric=cfg.training.metric,
                         interval=(interval[0].isoformat(), interval[1].isoformat()) if interval else None,
                         lineage=lineage, train_rows=training.get("train_rows"), valid_rows=training.get("valid_rows"))


def export_and_promote(h2o: Any, model: Any, cfg: PipelineConfig, client: Any, *, run_id: str,
                       logical_date: datetime | None, interval: tuple[date, date], try_number: int | None = None,
                       lineage: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> ExportOutcome:
    """Export ``model`` as a new version, then gate it and promote it by compare-and-swap (:func:`registry.promote`)."""
    exported = export(h2o, model, cfg, client, run_id=run_id, logical_date=logical_date, interval=interval,
                      try_number=try_number, lineage=lineage, training=training)
    candidate = registry.Candidate(exported.version, exported.metrics, interval[0].isoformat(),
                                   interval[1].isoformat(), exported.model_sha256, run_id)
    return ExportOutcome(exported, registry.promote(client, cfg.registry_uri, cfg.quality_gate, candidate))


def _prediction_columns(h2o: Any, model: Any, frame: Any, cfg: PipelineConfig,
                        domain: list[str] | None) -> list[dict[str, str]] | None:
    """What each column of the model's scoring output is called in the predictions (S3 and Hive):
    H2O's own names, from scoring one row, mapped to SQL identifiers (:func:`scoring.output_names`)."""
    from h2o_tasks.scoring import output_names

    if frame is None or frame.nrows == 0:
        return None
    preds = model.predict(frame[0:1, :])
    try:
        header = list(preds.columns)
    finally:
        h2o.remove(preds)
    return [{"scorer": h, "column": c} for h, c in zip(header, output_names(header, domain, cfg.scoring.id_columns),
                                                         strict=True)]


def _frame_of(h2o: Any, model: Any) -> tuple[Any, str]:
    """The model's validation frame if it is still in the cluster, else its training frame, else None."""
    params = model.actual_params
    for param, name in (("validation_frame", "validation"), ("training_frame", "training data")):
        frame = h2o.get_frame(params[param]) if params.get(param) else None  # None once removed
        if frame is not None:
            return frame, name
    return None, ""


def _download_pojo(h2o: Any, model: Any, work: Path) -> tuple[str | None, str | None]:
    """The POJO source's file name, or None and why: not every model has a POJO (e.g. StackedEnsemble)."""
    from h2o.exceptions import H2OResponseError, H2OValueError

    if not getattr(model, "have_pojo", True):
        return None, f"H2O cannot export {model.algo} models as POJO (the MOJO model.zip has the model)"
    pojo_dir = work / "pojo"
    pojo_dir.mkdir()
    try:
        h2o.download_pojo(model, path=str(pojo_dir), get_jar=False)
        java = sorted(pojo_dir.glob("*.java"))
        for f in java:
            f.rename(work / f.name)
    except (H2OValueError, H2OResponseError) as exc:
        return None, f"POJO export of {model.algo} failed: {str(exc).strip()[:300]} (the MOJO model.zip has the model)"
    finally:
        shutil.rmtree(pojo_dir)
    return (java[0].name, None) if java else (None, "POJO export wrote no .java file")


def _params(model: Any) -> dict[str, Any]:
    out = {}
    for name, p in (model.params or {}).items():
        value = p.get("actual") if isinstance(p, dict) else p
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[name] = value
    return out

"""Training: the configured algorithms (and AutoML) with a fixed seed, best model by metric."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from h2o_tasks import naming
from h2o_tasks.config import METRICS_HIGHER_IS_BETTER, PROBLEM_METRICS, AlgorithmConfig, PipelineConfig
from h2o_tasks.errors import ConfigError
from h2o_tasks.estimator_checks import estimator_class, parameter_names, unknown_parameter

MULTICLASS_AUC = "MACRO_OVR"  # the macro average of one-vs-rest AUCs


@dataclass(frozen=True)
class ModelSummary:
    model_id: str
    algo: str
    metrics: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    best_model_id: str
    best_algo: str
    metric: str
    best_metric_value: float
    models: list[ModelSummary]
    train_rows: int
    valid_rows: int
    seconds: float
    leaderboard: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_estimator(i: int, algo: AlgorithmConfig, cfg: PipelineConfig, model_id: str) -> Any:
    """An estimator with the configured parameters; unknown parameters name their field."""
    cls = estimator_class(algo.algo)
    if algo.algo == "xgboost" and not cls.available():
        raise ConfigError(f"training.algorithms[{i}].algo", "xgboost", "XGBoost is not available in this H2O "
                          "cluster (it needs a supported OS/CPU)", "use gbm instead")
    known = set(parameter_names(algo.algo))
    params: dict[str, Any] = {"model_id": model_id, "seed": cfg.training.seed}
    if cfg.training.nfolds:
        params.update(nfolds=cfg.training.nfolds, keep_cross_validation_predictions=False)
    if algo.algo == "glm":
        params["family"] = {"binary": "binomial", "multiclass": "multinomial"}.get(cfg.target.problem, "gaussian")
    if cfg.target.problem == "multiclass" and "auc_type" in known:
        params["auc_type"] = MULTICLASS_AUC  # H2O computes no multiclass AUC unless asked
    for key in algo.params:
        if key not in known:
            raise unknown_parameter(f"training.algorithms[{i}].params.{key}", algo.algo, key, algo.params[key])
    return cls(**{**params, **algo.params})


def metrics_of(perf: Any, problem: str) -> dict[str, float]:
    """The numbers that matter for the problem, as plain floats."""
    out = {}
    for name in PROBLEM_METRICS[problem]:
        try:
            value = _number(getattr(perf, name)())
        except Exception:
            value = None
        if value is None:  # a binary model's mean_per_class_error is per threshold; the JSON has the default's
            value = _number((getattr(perf, "_metric_json", None) or {}).get(name))
        if value is not None:
            out[name] = round(value, 6)
    return out


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None


def performance(model: Any, frame: Any, problem: str) -> Any:
    """The model's metrics on ``frame`` (a multiclass model's with its macro one-vs-rest AUC)."""
    if problem == "multiclass":
        return model.model_performance(frame, auc_type=MULTICLASS_AUC)
    return model.model_performance(frame)


def _performance(model: Any, valid: Any, nfolds: int, problem: str) -> Any:
    return model.model_performance(xval=True) if nfolds else performance(model, valid, problem)


def _better(a: float, b: float, metric: str) -> bool:
    return a > b if METRICS_HIGHER_IS_BETTER[metric] else a < b


def _rejected(i: int, algo: AlgorithmConfig, exc: Exception) -> ConfigError:
    msg = str(exc).split("ERRR on field:", 1)[-1].strip()[:300] if "ERRR" in str(exc) else str(exc)[:300]
    return ConfigError(f"training.algorithms[{i}].params", algo.params, f"H2O rejected them: {msg}",
                       "fix the parameter values")


def fit(estimators: list[Any], algos: tuple[AlgorithmConfig, ...], parallelism: int, args: dict[str, Any]) -> None:
    """Train the estimators, up to ``parallelism`` at once in the cluster (0: all at once).

    Each model is the same as when trained alone (fixed seeds); a job that fails cancels
    nothing else but is raised once every started job has ended.
    """
    import h2o

    step = parallelism or len(estimators) or 1
    for lo in range(0, len(estimators), step):
        batch = list(enumerate(estimators))[lo:lo + step]
        started, error = [], None
        for i, est in batch:
            try:
                est.start(**args)
                started.append((i, est))
            except h2o.exceptions.H2OResponseError as exc:
                error = error or _rejected(i, algos[i], exc)
                break
        for i, est in started:
            try:
                est.join()
            except h2o.exceptions.H2OResponseError as exc:
                error = error or _rejected(i, algos[i], exc)
        if error is not None:
            raise error from None


def run_seconds(est: Any) -> float:
    """The model's build time as H2O measured it (the wall time of a model trained beside others)."""
    try:
        return round(float(est._model_json["output"]["run_time"]) / 1000, 2)
    except (AttributeError, KeyError, TypeError, ValueError):
        return 0.0


def train(frame: Any, valid: Any | None, cfg: PipelineConfig, run_id: str) -> TrainResult:
    """Train every configured algorithm on ``frame`` and pick the best by ``training.metric``."""

    t0 = time.monotonic()
    tr = cfg.training
    label = cfg.target.label
    suffix = naming.run_hash(cfg.name, run_id)
    base = cfg.name.replace("-", "_")
    if valid is None and not tr.nfolds:  # named: the export task reads the validation frame for the report
        train_frame, valid = frame.split_frame(ratios=[1 - tr.validation_split], seed=tr.seed,
                                               destination_frames=[f"{base}_train_{suffix}", f"{base}_valid_{suffix}"])
    else:
        train_frame = frame
    estimators = [build_estimator(i, algo, cfg, f"{base}_{algo.algo}_{i}_{suffix}")
                  for i, algo in enumerate(tr.algorithms)]
    fit(estimators, tr.algorithms, tr.parallelism,
        dict(x=cfg.feature_names, y=label, training_frame=train_frame, validation_frame=None if tr.nfolds else valid))
    models = [ModelSummary(est.model_id, algo.algo, metrics_of(_performance(est, valid, tr.nfolds, cfg.target.problem),
                                                                   cfg.target.problem),
                           run_seconds(est))
              for est, algo in zip(estimators, tr.algorithms, strict=True)]
    if tr.automl is not None:
        from h2o.automl import H2OAutoML

        t = time.monotonic()
        aml = H2OAutoML(max_models=tr.automl.max_models, max_runtime_secs=tr.automl.max_runtime_secs, seed=tr.seed,
                        project_name=f"{base}_automl_{suffix}", nfolds=max(tr.nfolds, 0) or 0,
                        sort_metric=tr.metric.upper() if tr.metric != "r2" else "AUTO")
        aml.train(x=cfg.feature_names, y=label, training_frame=train_frame,
                  leaderboard_frame=None if tr.nfolds else valid, validation_frame=None if tr.nfolds else valid)
        leader = aml.leader
        metrics = metrics_of(_performance(leader, valid, tr.nfolds, cfg.target.problem), cfg.target.problem)
        models.append(ModelSummary(leader.model_id, "automl", metrics, round(time.monotonic() - t, 2)))
    scored = [m for m in models if tr.metric in m.metrics]
    if not scored:
        raise ConfigError("training.metric", tr.metric, f"was not computed for a {cfg.target.problem} problem",
                          "choose auc/logloss for binary, rmse/mae/r2 for regression")
    best = scored[0]
    for m in scored[1:]:
        if _better(m.metrics[tr.metric], best.metrics[tr.metric], tr.metric):
            best = m
    return TrainResult(best_model_id=best.model_id, best_algo=best.algo, metric=tr.metric,
                       best_metric_value=best.metrics[tr.metric], models=models, train_rows=train_frame.nrows,
                       valid_rows=valid.nrows if valid is not None else 0, seconds=round(time.monotonic() - t0, 2),
                       leaderboard={m.algo: m.metrics.get(tr.metric) for m in models})

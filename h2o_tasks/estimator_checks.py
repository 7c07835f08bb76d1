"""Deep checks of a pipeline's algorithm parameters against the installed H2O client.

Each parameter is set on an estimator of the installed ``h2o`` package, whose own property
setters check its type and allowed values; an unknown name is refused with the closest
known one. Needs no cluster, but imports H2O: for ``python -m h2o_tasks validate`` and the
training task, never for DAG parsing.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any

from h2o_tasks.config import PIPELINE_PARAMS, AlgorithmConfig, PipelineConfig
from h2o_tasks.errors import ConfigError


def estimator_class(algo: str) -> Any:
    from h2o.estimators import (
        H2OGeneralizedLinearEstimator,
        H2OGradientBoostingEstimator,
        H2ORandomForestEstimator,
        H2OXGBoostEstimator,
    )

    return {"gbm": H2OGradientBoostingEstimator, "glm": H2OGeneralizedLinearEstimator,
            "drf": H2ORandomForestEstimator, "xgboost": H2OXGBoostEstimator}[algo]


def parameter_names(algo: str) -> list[str]:
    return [p for p in inspect.signature(estimator_class(algo).__init__).parameters if p != "self"]


def unknown_parameter(path: str, algo: str, key: str, value: Any) -> ConfigError:
    """The error for a name H2O's ``algo`` does not have, suggesting the closest one."""
    close = difflib.get_close_matches(key, [n for n in parameter_names(algo) if n not in PIPELINE_PARAMS], n=1, cutoff=0.6)
    fix = f"did you mean {close[0]}? (H2O's {algo} parameters: python -c \"import h2o.estimators as e; " \
          f"help(e.{estimator_class(algo).__name__})\")" if close else "remove it, or use a parameter of H2O's " \
          f"{algo} (see help(h2o.estimators.{estimator_class(algo).__name__}))"
    return ConfigError(path, value, f"is not a parameter of H2O's {algo}", fix)


def algorithm_problems(i: int, algo: AlgorithmConfig) -> list[ConfigError]:
    """Every parameter of ``training.algorithms[i]`` that H2O's estimator would refuse."""
    from h2o.exceptions import H2OError

    cls = estimator_class(algo.algo)
    known = set(parameter_names(algo.algo))
    estimator = cls()
    out = []
    for key, value in algo.params.items():
        path = f"training.algorithms[{i}].params.{key}"
        if key not in known:
            out.append(unknown_parameter(path, algo.algo, key, value))
            continue
        try:
            setattr(estimator, key, value)
        except (H2OError, TypeError, ValueError) as exc:
            out.append(ConfigError(path, value, f"is refused by H2O's {algo.algo}: {exc}",
                                   "give a value of the type and range H2O's message names"))
    return out


def pipeline_problems(cfg: PipelineConfig) -> list[ConfigError]:
    """Every algorithm parameter problem of a pipeline that passed the cheap checks, naming its file."""
    return [e.in_file(cfg.path) if cfg.path else e
            for i, algo in enumerate(cfg.training.algorithms) for e in algorithm_problems(i, algo)]


def raw_problems(path: str) -> list[ConfigError]:
    """H2O's checks on the algorithms of a file that has other problems (so every problem is listed at
    once): each ``training.algorithms`` item with a known ``algo`` and a mapping of ``params``."""
    import yaml

    from h2o_tasks.config import ALGORITHMS

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return []
    training = raw.get("training") if isinstance(raw, dict) else None
    items = training.get("algorithms") if isinstance(training, dict) else None
    out = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("algo") in ALGORITHMS and isinstance(item.get("params") or {}, dict):
            params = {str(k): v for k, v in (item.get("params") or {}).items()}
            out.extend(e.in_file(path) for e in algorithm_problems(i, AlgorithmConfig(item["algo"], params)))
    return out

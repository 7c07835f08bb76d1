"""Preparing and checking frames in the cluster: declared types, the label, input contracts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from h2o_tasks.config import PipelineConfig
from h2o_tasks.errors import InputDataError

H2O_TYPE = {"int": ("int", "real"), "real": ("int", "real"), "enum": ("enum",)}
CLASSIFICATION = ("binary", "multiclass")


@dataclass(frozen=True)
class PreparedFrame:
    """The training frame: features with their declared types and the label."""

    frame: Any
    rows_in: int
    rows_dropped_no_label: int
    rows_out: int
    class_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The counts, for XCom. Built by hand: ``asdict`` would deep-copy the H2O frame."""
        return {"rows_in": self.rows_in, "rows_dropped_no_label": self.rows_dropped_no_label,
                "rows_out": self.rows_out, "class_counts": dict(self.class_counts)}


def _types(frame: Any) -> dict[str, str]:
    return dict(frame.types)


def coerce(frame: Any, name: str, declared: str, field_name: str) -> Any:
    """Give column ``name`` its declared type, or say why it cannot have it."""
    actual = _types(frame)[name]
    if actual in H2O_TYPE[declared]:
        return frame
    if declared == "enum":
        frame[name] = frame[name].asfactor()
        return frame
    # declared numeric, parsed as enum/string: convert, but not silently into NAs
    col = frame[name]
    converted = (col.ascharacter() if actual == "enum" else col).asnumeric()
    lost = int((converted.isna() & ~col.isna()).sum())
    if lost:
        raise InputDataError(field_name, name, f"is declared {declared} but {lost} value(s) are not numbers "
                                               f"(H2O parsed the column as {actual})",
                             "clean the column upstream or declare it as enum")
    frame[name] = converted
    return frame


def prepare(frame: Any, cfg: PipelineConfig, source: str = "") -> PreparedFrame:
    """Check the contract and derive the label: the frame that training reads."""
    columns = set(frame.columns)
    for i, f in enumerate(cfg.features):
        if f.name not in columns:
            raise InputDataError(f"features[{i}].name", f.name, f"is not a column of {source or 'the input'} "
                                                                f"(columns: {', '.join(frame.columns)})",
                                 "fix the feature name or the source")
    target = cfg.target
    if target.column not in columns:
        raise InputDataError("target.column", target.column, f"is not a column of {source or 'the input'} "
                                                             f"(columns: {', '.join(frame.columns)})",
                             "fix target.column or the source")
    rows_in = frame.nrows
    if rows_in == 0:
        raise InputDataError("interval", source, "holds no rows", "check that the interval's data is loaded")
    for i, f in enumerate(cfg.features):
        frame = coerce(frame, f.name, f.type, f"features[{i}].type")
    label = target.label
    if target.threshold is not None:
        frame = coerce(frame, target.column, "real", "target.column")
        frame = frame[~frame[target.column].isna(), :]
        frame[label] = (frame[target.column] > target.threshold).asfactor()
    else:
        frame = frame[~frame[target.column].isna(), :]
        if target.problem in CLASSIFICATION:
            frame[label] = frame[target.column].asfactor()
        else:
            frame = coerce(frame, target.column, "real", "target.column")
    rows_out = frame.nrows
    if rows_out == 0:
        raise InputDataError("target.column", target.column, f"is missing on all {rows_in} rows of {source}",
                             "check the source: no row can be used for training")
    counts: dict[str, int] = {}
    if target.problem in CLASSIFICATION:
        table = frame[label].table().as_data_frame(use_pandas=False, header=False)
        counts = {str(row[0]): int(float(row[1])) for row in table}
        if len(counts) < 2:
            seen = next(iter(counts), "none")
            raise InputDataError("target.column", target.column,
                                 f"has a single class ({label} = {seen} on all {rows_out} rows of {source})",
                                 "widen the window, or check target.threshold against the data")
        if len(counts) > 2 and target.problem == "binary":
            raise InputDataError("target.problem", "binary", f"the label {label} has {len(counts)} classes in "
                                 f"{source or 'the input'} ({', '.join(sorted(counts)[:10])}...)",
                                 "set problem: multiclass, or derive a binary label with target.threshold")
        if len(counts) == 2 and target.problem == "multiclass":
            raise InputDataError("target.problem", "multiclass", f"the label {label} has only 2 classes in "
                                 f"{source or 'the input'} ({', '.join(sorted(counts))})",
                                 "set problem: binary (a multiclass model needs at least 3 classes), or widen the window")
    keep = [*cfg.feature_names, label]
    prepared = frame[keep]
    return PreparedFrame(prepared, rows_in, rows_in - rows_out, rows_out, counts)


@dataclass(frozen=True)
class ScoringInputReport:
    rows: int
    unseen_levels: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_scoring_input(frame: Any, features: list[dict[str, Any]], model: str) -> tuple[Any, ScoringInputReport]:
    """Make ``frame`` match the model's feature schema; count levels the model never saw."""
    columns = set(frame.columns)
    for f in features:
        if f["name"] not in columns:
            raise InputDataError("scoring input", f["name"], f"is a feature of model {model} but is missing from the "
                                                             f"input (columns: {', '.join(frame.columns)})",
                                 "add the column to the scoring data or retrain without it")
    unseen: dict[str, int] = {}
    for f in features:
        frame = coerce(frame, f["name"], f["type"], f"feature {f['name']}")
    checked = [f for f in features if f["type"] == "enum" and f.get("domain") is not None]
    if checked:
        levels = dict(zip(frame.columns, frame.levels(), strict=True))  # every column's levels in one call
        for f in checked:
            known = set(f["domain"])
            new = [lvl for lvl in levels[f["name"]] if lvl not in known]
            if new:
                counts = frame[f["name"]].table().as_data_frame(use_pandas=False, header=False)
                unseen[f["name"]] = sum(int(float(r[1])) for r in counts if r[0] in new)
    return frame, ScoringInputReport(frame.nrows, unseen)

"""Declarative fields of the pipeline file: one definition per field, read three ways.

Each field of a configuration dataclass is declared with :func:`setting` (its doc, accepted
values, range, pattern, extra check). From those declarations come the parser
(:func:`read`, which collects every problem rather than stopping at the first), the JSON
Schema (:func:`json_schema`) and the README's table of fields (:func:`markdown_table`).
No H2O or Airflow import: cheap enough for DAG parse time.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from datetime import date
from typing import Any

from h2o_tasks.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """How one field is read and checked."""

    doc: str
    # YAML types accepted when they differ from the annotation (a CPU quantity may be written 2 or "500m")
    kinds: tuple[type, ...] = ()
    choices: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None
    # a full match of the value (of each item, for a list of strings)
    pattern: str = ""
    problem: str = ""  # what a value failing the pattern is not, e.g. "is not a DNS-1123 label"
    fix: str = ""
    # (field path, value) -> the value to keep; raises ConfigError
    check: Callable[[str, Any], Any] | None = None
    # what the JSON Schema cannot say in its own terms, shown in the docs
    default_doc: str = ""


def setting(default: Any = MISSING, *, doc: str, factory: Callable[[], Any] | None = None, **rule: Any) -> Any:
    """A dataclass field with its :class:`Rule`; without a default (or factory) the field is required."""
    metadata = {"rule": Rule(doc=doc, **rule)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if default is MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Problems:
    """The problems found so far in one file."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        self.errors.append(error)

    def check(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, or None with its ConfigError recorded."""
        try:
            return fn()
        except ConfigError as exc:
            self.add(exc)
            return None


class _Failed(Exception):
    """A nested section had problems (already recorded)."""


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a mapping", date: "a date (YYYY-MM-DD)"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _mapping(data: Any, where: str, known: tuple[str, ...]) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(where or "(top level)", data, "must be a mapping", f"write {where or 'the file'} as 'key: value' lines")
    unknown = sorted(set(map(str, data)) - set(known))
    if unknown:
        raise ConfigError(_path(where, unknown[0]), data[unknown[0]], "is not a known field",
                          f"remove it or use one of: {', '.join(known)}")
    return data


def typed(path: str, value: Any, kinds: tuple[type, ...], fix: str = "") -> Any:
    """``value`` if it is one of ``kinds`` (an integer is a number; true is not an integer)."""
    if float in kinds and int not in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        name = path.rsplit(".", 1)[-1]
        raise ConfigError(path, value, f"must be {_kind_names(kinds)}", fix or f"give {name} {_kind_names(kinds)} value")
    return value


def _unoptional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def fields_of(cls: type) -> list[tuple[dataclasses.Field, Any, Rule]]:
    """The declared fields of a configuration dataclass: (field, resolved type, rule)."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name], f.metadata["rule"]) for f in dataclasses.fields(cls) if "rule" in f.metadata]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _scalar(path: str, value: Any, tp: Any, rule: Rule) -> Any:
    value = typed(path, value, rule.kinds or (tp,))
    if rule.choices and value not in rule.choices:
        raise ConfigError(path, value, "is not supported", f"use one of: {', '.join(rule.choices)}")
    if (rule.lo is not None and value < rule.lo) or (rule.hi is not None and value > rule.hi):
        bound = f"between {rule.lo} and {rule.hi}" if rule.lo is not None and rule.hi is not None else (
            f"at least {rule.lo}" if rule.lo is not None else f"at most {rule.hi}")
        name = path.rsplit(".", 1)[-1]
        raise ConfigError(path, value, f"must be {bound}", rule.fix or f"set {name} {bound}")
    if rule.pattern and isinstance(value, str) and not re.fullmatch(rule.pattern, value):
        raise ConfigError(path, value, rule.problem or f"does not match {rule.pattern}", rule.fix or "correct the value")
    return value


def _value(path: str, raw: Any, tp: Any, rule: Rule, problems: Problems) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return read(tp, raw, path, problems)
    if origin is tuple:
        items = typed(path, raw, (list, tuple), rule.fix)
        item_tp = args[0]
        out, failed = [], False
        for i, item in enumerate(items):
            try:
                if dataclasses.is_dataclass(item_tp):
                    out.append(read(item_tp, item, f"{path}[{i}]", problems))
                else:
                    out.append(_scalar(f"{path}[{i}]", item, item_tp, dataclasses.replace(rule, check=None)))
            except ConfigError as exc:
                problems.add(exc)
                failed = True
            except _Failed:
                failed = True
        if failed:
            raise _Failed
        return tuple(out)
    if origin is dict:
        mapping = typed(path, raw, (dict,), rule.fix)
        return {str(k): (str(v) if args[1] is str else v) for k, v in mapping.items()}
    return _scalar(path, raw, tp, rule)


def read_values(cls: type, data: Any, where: str, problems: Problems) -> dict[str, Any] | None:
    """The fields of ``cls`` read from plain data, each checked by its rule; a field with problems
    (recorded) is left out. None when ``data`` is not a mapping of known fields."""
    specs = fields_of(cls)
    try:
        data = _mapping(data, where, tuple(f.name for f, _, _ in specs))
    except ConfigError as exc:
        problems.add(exc)
        return None
    values: dict[str, Any] = {}
    for f, tp, rule in specs:
        path = _path(where, f.name)
        tp, optional = _unoptional(tp)
        raw = data.get(f.name)
        try:
            if raw is None:
                default = _default(f)
                if default is MISSING:
                    raise ConfigError(path, None, "is required", rule.fix or (
                        f"add a '{f.name}:' section" if dataclasses.is_dataclass(tp)
                        else f"add '{f.name}:' under {where or 'the top level'}"))
                # an absent section still gets its own cross-field checks, on its defaults
                values[f.name] = read(tp, {}, path, problems) if dataclasses.is_dataclass(tp) and not optional else default
                continue
            value = _value(path, raw, tp, rule, problems)
            values[f.name] = rule.check(path, value) if rule.check else value
        except ConfigError as exc:
            problems.add(exc)
        except _Failed:
            pass
    return values


def read(cls: type, data: Any, where: str, problems: Problems) -> Any:
    """An instance of ``cls`` from plain data (:func:`read_values`), then the class's own ``_check``
    (cross-field rules), if it has one. Problems are recorded; :class:`_Failed` if there were any."""
    values = read_values(cls, data, where, problems)
    if values is None or len(values) < len(fields_of(cls)):
        raise _Failed
    obj = cls(**values)
    check = getattr(cls, "_check", None)
    if check is not None:
        try:
            check(obj, where)
        except ConfigError as exc:
            problems.add(exc)
            raise _Failed from None
    return obj


# ---------------------------------------------------------------- JSON Schema and the docs


def _json_type(tp: Any) -> dict[str, Any]:
    return {str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"},
            date: {"type": "string", "format": "date"}}.get(tp, {})


def _schema_of_value(tp: Any, rule: Rule, defs: dict[str, Any]) -> dict[str, Any]:
    tp, optional = _unoptional(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        out: dict[str, Any] = {"$ref": f"#/$defs/{_schema_class(tp, defs)}"}
    elif origin is tuple:
        item = args[0]
        items = {"$ref": f"#/$defs/{_schema_class(item, defs)}"} if dataclasses.is_dataclass(item) else {
            **_json_type(item), **({"pattern": f"^(?:{rule.pattern})$"} if rule.pattern else {})}
        out = {"type": "array", "items": items}
    elif origin is dict:
        out = {"type": "object", **({"additionalProperties": {"type": "string"}} if args[1] is str else {})}
    else:
        kinds = rule.kinds or (tp,)
        out = {"anyOf": [_json_type(k) for k in kinds]} if len(kinds) > 1 else dict(_json_type(kinds[0]))
        if rule.choices:
            out["enum"] = list(rule.choices)
        if rule.lo is not None:
            out["minimum"] = rule.lo
        if rule.hi is not None:
            out["maximum"] = rule.hi
        if rule.pattern:
            out["pattern"] = f"^(?:{rule.pattern})$"
    if optional:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def _schema_class(cls: type, defs: dict[str, Any]) -> str:
    name = cls.__name__
    if name in defs:
        return name
    defs[name] = {}  # reserved before recursing
    props, required = {}, []
    for f, tp, rule in fields_of(cls):
        prop = _schema_of_value(tp, rule, defs)
        prop["description"] = rule.doc + (f" Default: {rule.default_doc}." if rule.default_doc else "")
        default = _default(f)
        if default is MISSING:
            required.append(f.name)
        elif not dataclasses.is_dataclass(default) and not rule.default_doc:
            prop["default"] = _plain(default)
        props[f.name] = prop
    defs[name] = {"type": "object", "description": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
                  "properties": props, "additionalProperties": False, **({"required": required} if required else {})}
    return name


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, date):
        return value.isoformat()
    return value


def json_schema(root: type, title: str, schema_id: str) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of ``root`` and every section under it."""
    defs: dict[str, Any] = {}
    name = _schema_class(root, defs)
    top = defs.pop(name)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, "title": title, **top,
            "$defs": dict(sorted(defs.items()))}


def _describe(tp: Any, rule: Rule) -> str:
    tp, optional = _unoptional(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    names = {int: "integer", float: "number", str: "string", bool: "boolean", date: "date (YYYY-MM-DD)"}
    if dataclasses.is_dataclass(tp):
        text = "section"
    elif origin is tuple:
        text = "list of sections" if dataclasses.is_dataclass(args[0]) else f"list of {names[args[0]]}s"
    elif origin is dict:
        text = "mapping"
    elif rule.choices:
        text = " \\| ".join(f"`{c}`" for c in rule.choices)
    else:
        text = " or ".join(names[k] for k in (rule.kinds or (tp,)))
        if rule.lo is not None and rule.hi is not None:
            text += f", {rule.lo:g} to {rule.hi:g}"
        elif rule.lo is not None:
            text += f" ≥ {rule.lo:g}"
        elif rule.hi is not None:
            text += f" ≤ {rule.hi:g}"
    return text + (" or null" if optional else "")


def markdown_table(root: type) -> str:
    """The fields of ``root`` and its sections as a Markdown table: field, accepted values, default, meaning."""
    rows = ["| Field | Accepted | Default | Meaning |", "|---|---|---|---|"]

    def walk(cls: type, prefix: str, seen: tuple[type, ...]) -> None:
        for f, tp, rule in fields_of(cls):
            path = f"{prefix}{f.name}"
            inner, _ = _unoptional(tp)
            default = _default(f)
            if default is MISSING:
                shown = "required"
            elif rule.default_doc:
                shown = rule.default_doc
            elif dataclasses.is_dataclass(default) or default is None or default in ("", (), {}):
                shown = ""
            else:
                shown = f"`{default}`" if isinstance(default, str) else f"`{json.dumps(_plain(default))}`"
            doc = rule.doc.replace("|", "\\|")
            rows.append(f"| `{path}` | {_describe(tp, rule)} | {shown} | {doc} |")
            item = typing.get_args(inner)[0] if typing.get_origin(inner) is tuple else inner
            if dataclasses.is_dataclass(item) and item not in seen:
                walk(item, f"{path}[]." if typing.get_origin(inner) is tuple else f"{path}.", (*seen, item))

    walk(root, "", (root,))
    return "\n".join(rows) + "\n"

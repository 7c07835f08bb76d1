"""Pieces of HiveQL built from values: identifiers and string literals, refused when they could break out."""

from __future__ import annotations

import re

from h2o_tasks.errors import InputDataError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPE = re.compile(r"[A-Za-z]+(\(\d+(,\s*\d+)?\))?")


def identifier(name: str, field: str = "identifier") -> str:
    """A backtick-quoted identifier; anything but letters, digits and ``_`` is refused."""
    if not _IDENT.fullmatch(name):
        raise InputDataError(field, name, "is not a plain SQL identifier", "use letters, digits and underscores only")
    return f"`{name}`"


def literal(value: str, field: str) -> str:
    """A single-quoted string literal; a quote or backslash is refused rather than escaped."""
    if "'" in value or "\\" in value:
        raise InputDataError(field, value, "contains a quote or backslash", "use a value without ' or \\")
    return f"'{value}'"


def column_type(hive_type: str, field: str = "columns") -> str:
    """A plain Hive type such as ``BIGINT`` or ``DECIMAL(10,2)``."""
    if not _TYPE.fullmatch(hive_type):
        raise InputDataError(field, hive_type, "is not a plain Hive type", "use BIGINT, DOUBLE, STRING, ...")
    return hive_type

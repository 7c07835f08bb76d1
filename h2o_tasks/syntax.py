"""The syntax of the values a pipeline file shares with Kubernetes, container registries, cron and SQL.

Each pattern is matched whole (``re.fullmatch``): ``$`` alone would let a trailing newline through.
"""

from __future__ import annotations

import re
from typing import Any

from h2o_tasks.errors import ConfigError

DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"  # RFC 1123 label, as Kubernetes checks it
DNS_SUBDOMAIN = rf"(?=.{{1,253}}$){DNS_LABEL}(\.{DNS_LABEL})*"
# an Ingress host with the run's cluster name in its first label: one host per run
INGRESS_HOST = rf"[a-z0-9-]*\{{cluster\}}[a-z0-9-]*(\.{DNS_LABEL})+"
SQL_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
CONN_ID = r"[A-Za-z0-9_.-]{1,250}"
JVM_SIZE = r"[0-9]+[mMgG]"
S3_URI = r"s3://[^/\s]+(/\S*)?"  # a bucket, then a key prefix; no whitespace
# apimachinery's resource.Quantity, without a sign (a request or a size is never negative)
QUANTITY = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?"
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
LABEL_KEY = rf"((?=[^/]{{1,253}}/){DNS_LABEL}(\.{DNS_LABEL})*/)?{_LABEL_NAME}"
LABEL_VALUE = rf"{_LABEL_NAME}?"
# the distribution project's reference grammar: [domain[:port]/]path[:tag][@digest]
_COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
_DOMAIN = r"([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(:[0-9]+)?"
IMAGE = (rf"({_DOMAIN}/)?{_COMPONENT}(/{_COMPONENT})*(:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
         r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")

PLACEHOLDERS = ("date", "year", "month", "day", "hour")


def partition_template(path: str, value: str) -> str:
    """A layout of date partitions under a prefix: ``dt={date}``, ``year={year}/month={month}/day={day}``,
    ``date={date}/hr={hour}``... ({date} is YYYY-MM-DD, {year} YYYY, {month} MM, {day} DD, {hour} HH)."""
    fix = ("write the partition directories with {date}, or {year}, {month} and {day}, and optionally {hour} "
           "in the last level, e.g. dt={date}, year={year}/month={month}/day={day} or dt={date}/hr={hour}")
    names = re.findall(r"\{([^{}]*)\}", value)
    unknown = [n for n in names if n not in PLACEHOLDERS]
    if unknown or re.sub(r"\{[^{}]*\}", "", value).count("{") or re.sub(r"\{[^{}]*\}", "", value).count("}"):
        raise ConfigError(path, value, f"has placeholders other than {{{'}, {'.join(PLACEHOLDERS)}}}", fix)
    if "date" not in names and not {"year", "month", "day"} <= set(names):
        raise ConfigError(path, value, "does not name the day ({date}, or {year}, {month} and {day})", fix)
    segments = value.split("/")
    if any(not s for s in segments) or any(c.isspace() for c in value):
        raise ConfigError(path, value, "has an empty level or a space", fix)
    if ("hour" in names and "{hour}" not in segments[-1]) or any("{hour}" in s for s in segments[:-1]):
        raise ConfigError(path, value, "has {hour} outside its last level", fix)
    if len(names) != len(set(names)):
        raise ConfigError(path, value, "names a placeholder twice", fix)
    return value


# Airflow's cron presets (airflow.utils.dates.cron_presets) and its one-off schedule
CRON_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
SCHEDULE_PRESETS = (*CRON_PRESETS, "@once")


def quantity(path: str, value: Any) -> str:
    """A Kubernetes quantity above zero (``500m``, ``2``, ``10Gi``), as a string."""
    text = str(value)
    if not re.fullmatch(QUANTITY, text) or float(re.match(r"[0-9.]*", text).group() or 0) <= 0:
        raise ConfigError(path, value, "is not a Kubernetes quantity above zero",
                          "write a number with an optional suffix, e.g. 500m or 2 (CPU), 10Gi or 512Mi (sizes)")
    return text


def labels(path: str, value: dict[str, str]) -> dict[str, str]:
    """Kubernetes label keys and values."""
    for key, val in value.items():
        if not re.fullmatch(LABEL_KEY, key):
            raise ConfigError(f"{path}.{key}", key, "is not a Kubernetes label key",
                              "use [PREFIX/]NAME: NAME up to 63 of letters, digits, '-', '_', '.', "
                              "alphanumeric at both ends; PREFIX a DNS subdomain")
        if not re.fullmatch(LABEL_VALUE, val):
            raise ConfigError(f"{path}.{key}", val, "is not a Kubernetes label value",
                              "use up to 63 of letters, digits, '-', '_', '.', alphanumeric at both ends")
    return value


def annotations(path: str, value: dict[str, str]) -> dict[str, str]:
    """Kubernetes annotation keys (as label keys) with string values."""
    for key, val in value.items():
        if not re.fullmatch(LABEL_KEY, key):
            raise ConfigError(f"{path}.{key}", key, "is not a Kubernetes annotation key",
                              "use [PREFIX/]NAME, e.g. nginx.ingress.kubernetes.io/proxy-body-size")
        if not isinstance(val, str):
            raise ConfigError(f"{path}.{key}", val, "is not a string", "quote the value")
    return value


def schedule(path: str, value: str | None) -> str | None:
    """An Airflow schedule: a cron preset, ``@once``, or a cron expression croniter accepts."""
    if value is None:
        return None
    if value.startswith("@"):
        if value not in SCHEDULE_PRESETS:
            raise ConfigError(path, value, "is not an Airflow schedule preset", f"use one of: {', '.join(SCHEDULE_PRESETS)}, "
                              "a cron expression such as '0 6 * * 1', or null for no schedule")
        return value
    from croniter import croniter  # Airflow's own cron parser

    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ConfigError(path, value, "is not a cron expression",
                          "write five fields (minute hour day-of-month month day-of-week) such as '0 6 * * 1', "
                          f"or a preset ({', '.join(SCHEDULE_PRESETS)})")
    return value


ON_NEW_CHAMPION = "on_new_champion"
ON_NEW_DATA = "on_new_data"
ON_ASSET = (ON_NEW_CHAMPION, ON_NEW_DATA)


def scoring_schedule(path: str, value: str | None) -> str | None:
    """The scoring DAG's schedule: as :func:`schedule`, or ``on_new_champion`` (the champion's Asset) or
    ``on_new_data`` (the S3 source's Asset)."""
    return value if value in ON_ASSET else schedule(path, value)

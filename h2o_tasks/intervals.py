"""Which data a run reads: the training window and the scoring days of an interval."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from h2o_tasks.config import PipelineConfig


@dataclass(frozen=True, order=True)
class Period:
    """One scoring partition: a day, or an hour of a day (``source.granularity``)."""

    day: date
    hour: int | None = None

    @property
    def key(self) -> str:
        """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH``."""
        return self.day.isoformat() if self.hour is None else f"{self.day.isoformat()}T{self.hour:02d}"

    @classmethod
    def parse(cls, key: str) -> Period:
        day, _, hour = key.partition("T")
        return cls(date.fromisoformat(day), int(hour) if hour else None)

    def spec(self) -> dict[str, str]:
        """The Hive partition: ``{"dt": "YYYY-MM-DD"}``, with ``"hr": "HH"`` for an hour."""
        return {"dt": self.day.isoformat(), **({"hr": f"{self.hour:02d}"} if self.hour is not None else {})}

    def path(self) -> str:
        """The output partition's key segments: ``dt=YYYY-MM-DD[/hr=HH]``."""
        return "/".join(f"{k}={v}" for k, v in self.spec().items())


def periods(granularity: str, start: datetime | date, end: datetime | date) -> list[Period]:
    """The days, or the hours, of ``[start, end)`` (at least one: an empty interval means its start's)."""
    if granularity == "day":
        return [Period(d) for d in days(_as_date(start), _as_date(end))]
    first = _as_datetime(start).replace(minute=0, second=0, microsecond=0)
    last = max(_as_datetime(end), first + timedelta(hours=1))
    count = int((last - first).total_seconds() // 3600) + (1 if (last - first).total_seconds() % 3600 else 0)
    return [Period(t.date(), t.hour) for t in (first + timedelta(hours=i) for i in range(count))]


def _as_date(value: datetime | date) -> date:
    return value.date() if isinstance(value, datetime) else value


def _as_datetime(value: datetime | date) -> datetime:
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)


def training_window(cfg: PipelineConfig, start: date, end: date) -> tuple[date, date]:
    """``training_window_days`` days ending at the interval's end (exclusive)."""
    return end - timedelta(days=cfg.source.training_window_days), end


def scoring_days(start: date, end: date) -> tuple[date, date]:
    """The interval itself: a daily run scores one day's partition."""
    return start, max(end, start + timedelta(days=1))


def window(cfg: PipelineConfig, purpose: str, start: date, end: date) -> tuple[date, date]:
    return training_window(cfg, start, end) if purpose == "train" else scoring_days(start, end)


def days(start: date, end: date) -> list[date]:
    """Every day of ``[start, end)`` (at least ``start``)."""
    start, end = scoring_days(start, end)
    return [start + timedelta(days=i) for i in range((end - start).days)]


def partition_path(day: date | Period) -> str:
    """The output partition of one day (or hour): ``dt=YYYY-MM-DD[/hr=HH]`` (S3 key segments, a Hive partition)."""
    return (day if isinstance(day, Period) else Period(day)).path()


def partition_spec(day: date | Period) -> dict[str, str]:
    """The Hive partition of one day (or hour): ``{"dt": "YYYY-MM-DD"[, "hr": "HH"]}``."""
    return (day if isinstance(day, Period) else Period(day)).spec()


def partition_columns(granularity: str) -> tuple[str, ...]:
    """The Hive table's partition columns for predictions of this granularity."""
    return ("dt", "hr") if granularity == "hour" else ("dt",)

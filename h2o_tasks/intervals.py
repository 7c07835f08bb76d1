"""Which data a run reads: the training window and the scoring days of an interval."""

from __future__ import annotations

from datetime import date, timedelta

from h2o_tasks.config import PipelineConfig


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


def partition_path(day: date) -> str:
    """The output partition of one day: ``dt=YYYY-MM-DD`` (an S3 key segment and a Hive partition)."""
    return f"dt={day.isoformat()}"


def partition_spec(day: date) -> dict[str, str]:
    """The Hive partition of one day: ``{"dt": "YYYY-MM-DD"}``."""
    return {"dt": day.isoformat()}

"""Airflow Assets of a pipeline: what its runs read and write.

They are the tasks' ``inlets`` and ``outlets`` (lineage, the UI's asset graph) and drive
data-aware scheduling: ``schedule.scoring: on_new_champion`` runs the scoring DAG each time a
training run promotes a new champion, ``on_new_data`` each time an event is added to the S3
source's Asset (by the DAG or system that lands the data). Built from the pipeline file alone (no connection at
parse time). Each Asset is named by its URI: Airflow marks an asset inactive (and fails the tasks
naming it) when one URI is given two names, e.g. by a renamed pipeline.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, AssetAlias

from h2o_tasks.config import PipelineConfig
from h2o_tasks.syntax import ON_NEW_CHAMPION, ON_NEW_DATA

GROUP = "h2o"


def champion(cfg: PipelineConfig) -> Asset:
    """The pipeline's champion pointer (``<registry_uri>/champion.json``): an event each time it moves."""
    return Asset(uri=f"{cfg.registry_uri.rstrip('/')}/champion.json", group=GROUP)


def champion_alias(cfg: PipelineConfig) -> AssetAlias:
    """The export task's outlet: it adds a :func:`champion` event only when it promoted (a run whose model
    the gate refused moves nothing, and triggers nothing)."""
    return AssetAlias(name=f"h2o/{cfg.name}/champion-moves", group=GROUP)


def predictions(cfg: PipelineConfig) -> Asset:
    """The committed predictions (``scoring.output_uri``)."""
    return Asset(uri=cfg.scoring.output_uri.rstrip("/"), group=GROUP)


def source(cfg: PipelineConfig) -> list[Asset]:
    """The S3 source's prefix (named by its URI, so pipelines reading the same data share it); none for Hive,
    whose asset URI needs the server's host, known only from the connection at run time."""
    if cfg.source.kind != "s3":
        return []
    return [Asset(uri=cfg.source.s3.uri.rstrip("/"), group=GROUP)]


def scoring_schedule(cfg: PipelineConfig) -> Any:
    """The scoring DAG's schedule: its cron or preset, the champion asset (``on_new_champion``), or the S3
    source's asset (``on_new_data``)."""
    if cfg.schedule.scoring == ON_NEW_CHAMPION:
        return [champion(cfg)]
    if cfg.schedule.scoring == ON_NEW_DATA:
        return source(cfg)
    return cfg.schedule.scoring


def event_days(context: Any) -> list[str]:
    """The days (ISO) named by the ``day`` extra of the events that triggered this run, sorted; empty for a
    scheduled or manual run, or for events that name no day."""
    from datetime import datetime

    from h2o_tasks.errors import ConfigError

    days = set()
    for asset, asset_events in (context.get("triggering_asset_events") or {}).items():
        for event in asset_events:
            day = (event.extra or {}).get("day")
            if not day:
                continue
            try:
                days.add(datetime.fromisoformat(str(day)).date().isoformat())  # a day, or a time in it
            except ValueError:
                raise ConfigError(f"extra.day of an event of asset {getattr(asset, 'uri', asset)}", str(day),
                                  "is not a day", "send the day that landed as YYYY-MM-DD, or no 'day' to score the "
                                  "day of the run") from None
    return sorted(days)


def triggered_span(context: Any, cfg: PipelineConfig) -> tuple[str, str] | None:
    """The first and last day a run triggered by asset events scores, or None for another run.

    A champion event names the last day of the training interval that promoted it: several promotions
    between two scoring runs score the latest. A source event names a day that landed: several of them
    score the span from the first to the last."""
    days = event_days(context)
    if not days:
        return None
    if cfg.schedule.scoring == ON_NEW_DATA:
        return days[0], days[-1]
    return days[-1], days[-1]


def openlineage_dataset(uri: str) -> Any:
    """An S3 URI as the OpenLineage dataset the amazon provider makes of the same Asset (namespace
    ``s3://bucket``, name the key)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    from h2o_tasks.s3 import split_uri

    bucket, key = split_uri(uri)
    return Dataset(namespace=f"s3://{bucket}", name=key.rstrip("/") or "/")

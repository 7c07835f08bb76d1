"""Airflow Assets of a pipeline: what its runs read and write.

They are the tasks' ``inlets`` and ``outlets`` (lineage, the UI's asset graph) and drive
data-aware scheduling: ``schedule.scoring: on_new_champion`` runs the scoring DAG each time a
training run promotes a new champion. Built from the pipeline file alone (no connection at
parse time). Each Asset is named by its URI: Airflow marks an asset inactive (and fails the tasks
naming it) when one URI is given two names, e.g. by a renamed pipeline.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, AssetAlias

from h2o_tasks.config import PipelineConfig
from h2o_tasks.syntax import ON_NEW_CHAMPION

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
    """The scoring DAG's schedule: its cron or preset, or the champion asset (``on_new_champion``)."""
    return [champion(cfg)] if cfg.schedule.scoring == ON_NEW_CHAMPION else cfg.schedule.scoring


def champion_event_day(context: Any) -> str | None:
    """For a run triggered by a champion event: the last day of the training interval that promoted it (ISO),
    the day its scoring covers; None for any other run."""
    events = context.get("triggering_asset_events") or {}
    days = [e.extra.get("day") for asset_events in events.values() for e in asset_events
            if (e.extra or {}).get("day")]
    return max(days) if days else None


def openlineage_dataset(uri: str) -> Any:
    """An S3 URI as the OpenLineage dataset the amazon provider makes of the same Asset (namespace
    ``s3://bucket``, name the key)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    from h2o_tasks.s3 import split_uri

    bucket, key = split_uri(uri)
    return Dataset(namespace=f"s3://{bucket}", name=key.rstrip("/") or "/")

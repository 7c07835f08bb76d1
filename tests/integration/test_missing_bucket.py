"""A bucket that does not exist, as the source and as the registry, on a real S3 API (moto server):
the error must name the bucket and be a non-retryable engine error (a retry cannot create it)."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pytest

from devtools import dag_folder
from h2o_tasks import config, registry, scoring
from h2o_tasks.errors import SourceNotFoundError
from h2o_tasks.sources import s3 as s3_source

pytestmark = pytest.mark.integration


@pytest.fixture
def missing() -> str:
    return f"no-such-bucket-{uuid.uuid4().hex[:8]}"


def pipeline(tmp_path: Path, bucket: str) -> config.PipelineConfig:
    raw = dag_folder.variant(name="nobucket", registry_uri=f"s3://{bucket}/models",
                             source={"s3": {"uri": f"s3://{bucket}/flights", "format": "parquet"}},
                             scoring={"output_uri": f"s3://{bucket}/predictions", "hive_table": ""})
    return config.load(dag_folder.write_pipeline(tmp_path / "dags", "nobucket", raw))


def test_a_missing_source_bucket_is_named(s3_settings, tmp_path, missing):
    cfg = pipeline(tmp_path, missing)
    with pytest.raises(SourceNotFoundError) as err:
        s3_source.resolve(s3_settings.client(), cfg.source.s3, date(2013, 1, 28), date(2013, 2, 4))
    assert (err.value.field, err.value.value) == ("source.s3.uri", f"s3://{missing}/flights")
    assert f"bucket {missing!r} does not exist" in str(err.value) and not err.value.retryable


def test_listing_a_registry_in_a_missing_bucket_names_it(s3_settings, missing):
    with pytest.raises(SourceNotFoundError) as err:
        registry.list_versions(s3_settings.client(), f"s3://{missing}/models")
    assert (err.value.field, err.value.value) == ("bucket", missing) and "does not exist" in str(err.value)


@pytest.mark.parametrize("step", ["score-with-champion", "export-a-version"])
def test_a_registry_in_a_missing_bucket_is_named(s3_settings, tmp_path, missing, step):
    cfg = pipeline(tmp_path, missing)
    client = s3_settings.client()
    with pytest.raises(SourceNotFoundError) as err:
        if step == "score-with-champion":
            scoring.champion(client, cfg)
        else:
            (tmp_path / "v").mkdir()
            (tmp_path / "v" / "model.zip").write_bytes(b"model")
            registry.write_version(client, cfg.registry_uri, "v1", tmp_path / "v", {"metrics": {}})
    assert missing in str(err.value) and not err.value.retryable

"""The registry on a real S3 API (moto server) refusing an incomplete version (no metadata.json: an
export that died before its last object) for promotion, rollback and scoring, and the history records
a promotion and a rollback leave, read as the objects they are."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from devtools import dag_folder
from h2o_tasks import config, registry, s3, scoring
from h2o_tasks.config import QualityGateConfig
from h2o_tasks.errors import RegistryError, SourceNotFoundError

pytestmark = pytest.mark.integration
GATE = QualityGateConfig("auc", 0.7, 1.0)


def version(client, uri: str, tmp_path: Path, name: str, *, complete: bool = True) -> registry.Candidate:
    work = tmp_path / name
    work.mkdir()
    (work / "model.zip").write_bytes(f"model {name}".encode() * 100)
    if complete:
        registry.write_version(client, uri, name, work, {"metrics": {"auc": 0.8}, "metric": "auc",
                                                         "lineage": {"run_id": name, "interval_end": "2013-02-11"}})
    else:  # the export died after its artifacts, before metadata.json
        s3.create_file(client, work / "model.zip", s3.join(registry.version_uri(uri, name), "model.zip"))
    return registry.Candidate(name, {"auc": 0.8}, "2013-02-04", "2013-02-11", registry.sha256_file(work / "model.zip"),
                              name)


def etags(client, uri: str) -> dict[str, str]:
    return {k: s3.head(client, k)["etag"] for k in s3.list_keys(client, uri)}


def test_an_incomplete_version_is_never_promoted(s3_settings, s3_bucket, tmp_path):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    partial = version(client, uri, tmp_path, "v-partial", complete=False)
    with pytest.raises(SourceNotFoundError) as err:  # the first promotion of the registry
        registry.promote(client, uri, GATE, partial)
    assert (err.value.field, err.value.value) == ("registry_uri", registry.version_uri(uri, "v-partial"))
    assert "has no metadata.json (an incomplete or deleted version)" in str(err.value)
    assert registry.read_champion(client, uri) is None and s3.list_keys(client, s3.join(uri, "history")) == []
    # nor over a champion, which stays as it was
    registry.promote(client, uri, GATE, version(client, uri, tmp_path, "v1"))
    before = etags(client, uri)
    with pytest.raises(SourceNotFoundError):
        registry.promote(client, uri, GATE, partial)
    assert etags(client, uri) == before


def test_an_incomplete_version_is_never_rolled_back_to(s3_settings, s3_bucket, tmp_path):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    registry.promote(client, uri, GATE, version(client, uri, tmp_path, "v1"))
    version(client, uri, tmp_path, "v-partial", complete=False)
    before = etags(client, uri)
    with pytest.raises(SourceNotFoundError) as err:
        registry.rollback(client, uri, "v-partial", reason="by hand")
    assert "has no metadata.json" in str(err.value) and "v-partial" in str(err.value)
    assert etags(client, uri) == before


def test_a_champion_whose_version_lost_its_metadata_is_not_scored_with(s3_settings, s3_bucket, tmp_path):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    registry.promote(client, uri, GATE, version(client, uri, tmp_path, "v1"))
    client.delete_object(Bucket=s3_bucket, Key="models/versions/v1/metadata.json")  # deleted by hand
    path = dag_folder.write_pipeline(tmp_path / "dags", "refusals", dag_folder.variant(
        name="refusals", registry_uri=uri, scoring={"output_uri": f"s3://{s3_bucket}/predictions", "hive_table": "",
                                                    "engine": "offline"}))
    cfg = config.load(path)
    with pytest.raises(SourceNotFoundError) as err:
        scoring.champion(client, cfg)
    assert "versions/v1" in str(err.value) and "has no metadata.json" in str(err.value)
    # the offline engine refuses before it reads any input or writes any output
    with pytest.raises(SourceNotFoundError):
        scoring.score_offline(cfg, s3_settings, date(2013, 2, 4), date(2013, 2, 5), run_id="r")
    assert s3.list_keys(client, f"s3://{s3_bucket}/predictions") == []


def test_promotions_and_a_rollback_leave_one_write_once_record_each(s3_settings, s3_bucket, tmp_path):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    for name in ("v1", "v2"):
        registry.promote(client, uri, GATE, version(client, uri, tmp_path, name))
    promoted = etags(client, s3.join(uri, "history"))
    back = registry.rollback(client, uri, reason="v2 scores badly")
    keys = s3.list_keys(client, s3.join(uri, "history"))
    assert [k.rsplit("/", 1)[1] for k in keys] == ["00000001-v1.json", "00000002-v2.json", "00000003-v1.json"]
    records = [json.loads(s3.read_bytes(client, k)) for k in keys]
    assert [(r["generation"], r["version"], r["action"], r["previous"]) for r in records] == [
        (1, "v1", "promote", None), (2, "v2", "promote", "v1"), (3, "v1", "rollback", "v2")]
    assert records[2]["reason"] == "v2 scores badly" and records[2]["model_sha256"] == records[0]["model_sha256"]
    assert records[2] == back.to_dict() == json.loads(s3.read_bytes(client, s3.join(uri, "champion.json")))
    assert {k: v for k, v in etags(client, s3.join(uri, "history")).items() if k in promoted} == promoted
    # a record is never replaced: another writer of generation 3 is refused, the record kept
    with pytest.raises(RegistryError):
        registry._record(client, uri, registry.ChampionPointer(**{**records[2], "reason": "someone else"}))
    assert json.loads(s3.read_bytes(client, keys[2]))["reason"] == "v2 scores badly"

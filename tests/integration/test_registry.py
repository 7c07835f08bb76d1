"""The model registry against a real S3 API (moto server): write-once versions, the champion's
compare-and-swap under concurrent writers, append-only history, rollback, digests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from h2o_tasks import registry, s3, testhooks
from h2o_tasks.config import QualityGateConfig
from h2o_tasks.errors import PreconditionError, RegistryError

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
GATE = QualityGateConfig("auc", 0.7, 1.0)  # any passing model may replace the champion: the interval decides


def _version(client, registry_uri: str, tmp_path: Path, name: str, auc: float, end: str) -> registry.Candidate:
    """A complete version with a small model.zip, written through the protocol."""
    work = tmp_path / name
    work.mkdir()
    (work / "model.zip").write_bytes(f"model {name}".encode() * 100)
    (work / "report.html").write_text(f"<p>{name}</p>")
    registry.write_version(client, registry_uri, name, work,
                           {"metrics": {"auc": auc}, "metric": "auc",
                            "lineage": {"run_id": name, "interval_start": "2013-01-01", "interval_end": end}})
    return registry.Candidate(name, {"auc": auc}, "2013-01-01", end, registry.sha256_file(work / "model.zip"), name)


def _etags(client, uri: str) -> dict[str, str]:
    return {k: s3.head(client, k)["etag"] for k in s3.list_keys(client, uri)}


def test_a_version_is_written_once(s3_settings, s3_bucket, tmp_path):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    _version(client, uri, tmp_path, "v1", 0.8, "2013-02-11")
    first = _etags(client, registry.version_uri(uri, "v1"))
    assert sorted(k.rsplit("/", 1)[1] for k in first) == ["metadata.json", "model.zip", "report.html"]
    meta = registry.load_metadata(client, uri, "v1")
    assert meta["files"][-1] == "metadata.json" and set(meta["digests"]) == {"model.zip", "report.html"}
    (tmp_path / "again").mkdir()
    with pytest.raises(PreconditionError):  # a second writer of the same version id (a bug, or anyone else)
        _version(client, uri, tmp_path / "again", "v1", 0.9, "2013-02-11")
    assert _etags(client, registry.version_uri(uri, "v1")) == first  # every object's first writer is kept


def test_large_artifacts_are_created_conditionally_in_parts(s3_settings, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(s3, "PART_BYTES", 5 * MiB)  # S3's smallest part
    client = s3_settings.client()
    big = tmp_path / "model.zip"
    big.write_bytes(os.urandom(11 * MiB))
    uri = f"s3://{s3_bucket}/big/model.zip"
    etag = s3.create_file(client, big, uri)
    assert etag.strip('"').endswith("-3")  # three parts
    assert s3.create_file(client, big, uri) == etag  # the same bytes again (a retry whose response was lost): ours
    other = tmp_path / "other.zip"
    other.write_bytes(os.urandom(11 * MiB))
    with pytest.raises(PreconditionError):
        s3.create_file(client, other, uri)
    assert s3.head(client, uri)["etag"] == etag and s3.read_bytes(client, uri) == big.read_bytes()
    uploads = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert uploads == []  # the refused upload was aborted, not left open


def test_scoring_refuses_a_model_whose_digest_does_not_match(s3_settings, s3_bucket, tmp_path):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    _version(client, uri, tmp_path, "v1", 0.8, "2013-02-11")
    meta = registry.load_metadata(client, uri, "v1")
    path = tmp_path / "download.zip"
    s3.write_bytes(client, s3.join(registry.version_uri(uri, "v1"), "model.zip"), b"replaced behind the registry's back")
    client.download_file(s3_bucket, "models/versions/v1/model.zip", str(path))
    with pytest.raises(RegistryError, match="does not match the SHA-256"):
        registry.verify_model(path, meta, "v1")
    with pytest.raises(RegistryError, match="records no SHA-256"):
        registry.verify_model(path, {k: v for k, v in meta.items() if k not in ("digests", "model_sha256")}, "v1")


def test_promotions_race_through_compare_and_swap(s3_settings, s3_bucket, tmp_path, monkeypatch):
    """Three writers read "no champion" at once (a barrier between the read and the swap): one
    wins the first swap, the others lose, read again and gate against the new champion."""
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    candidates = [_version(client, uri, tmp_path, f"v{i}", auc, end)
                  for i, (auc, end) in enumerate([(0.80, "2013-02-04"), (0.75, "2013-02-18"), (0.90, "2013-02-11")])]
    monkeypatch.setenv(testhooks.ENV, json.dumps({"registry:before-cas": f"barrier:{tmp_path / 'barrier'}:3:60"}))

    def promote(c):
        return registry.promote(s3_settings.client(), uri, GATE, c)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(promote, candidates))
    assert len(list((tmp_path / "barrier").iterdir())) >= 3  # all three did meet between read and swap
    assert sum(r.attempts > 1 for r in results) >= 2  # two lost the first swap and went round again
    champion = registry.read_champion(client, uri)
    assert champion.version == "v1" and champion.interval_end == "2013-02-18"  # the newest interval, as the policy says
    promoted = [r.pointer for r in results if r.pointer is not None]
    history = registry.history(client, uri)
    assert [p.generation for p in history] == list(range(1, len(promoted) + 1))  # one record per promotion
    assert sorted(p.version for p in history) == sorted(p.version for p in promoted)
    assert history[-1].version == "v1" and history[-1].previous == (history[-2].version if len(history) > 1 else None)
    for r in results:  # whoever lost says why
        if r.pointer is None:
            assert "older interval never replaces" in r.decision.reason or "champion" in r.decision.reason


def test_a_writer_that_dies_between_swap_and_record_leaves_the_record_to_the_next(s3_settings, s3_bucket, tmp_path):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    a = _version(client, uri, tmp_path, "va", 0.8, "2013-02-04")
    b = _version(client, uri, tmp_path, "vb", 0.8, "2013-02-11")
    registry.promote(client, uri, GATE, a)
    # the pointer is swapped to vb, and its writer is gone before its own history record
    pointer = registry.ChampionPointer("vb", "auc", 0.8, "t", "vb", "2013-01-01", "2013-02-11", 2, "va")
    _, etag = registry.read_champion_tagged(client, uri)
    s3.swap_bytes(client, s3.join(uri, "champion.json"), json.dumps(pointer.to_dict()).encode(), etag)
    assert [p.version for p in registry.history(client, uri)] == ["va", "vb"]
    c = _version(client, uri, tmp_path, "vc", 0.8, "2013-02-18")
    registry.promote(client, uri, GATE, c)
    assert [(p.generation, p.version) for p in registry.history(client, uri)] == [(1, "va"), (2, "vb"), (3, "vc")]
    assert b.version == "vb"


def _cli(*args: str, s3_settings) -> subprocess.CompletedProcess:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": s3_settings.access_key, "AWS_SECRET_ACCESS_KEY": s3_settings.secret_key,
           "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "h2o_tasks", "registry", *args, "--endpoint-url",
                           s3_settings.endpoint_url], capture_output=True, text=True, env=env, timeout=120)


def test_cli_lists_versions_shows_history_and_rolls_back(s3_settings, s3_bucket, tmp_path):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    for name, end in (("v1", "2013-02-04"), ("v2", "2013-02-11")):
        registry.promote(client, uri, GATE, _version(client, uri, tmp_path, name, 0.8, end))
    s3.write_bytes(client, s3.join(registry.version_uri(uri, "v3"), "model.zip"), b"an export that died")
    listed = _cli("list", "--registry-uri", uri, s3_settings=s3_settings)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("  v1  complete") and lines[1].startswith("* v2  complete")
    assert "INCOMPLETE" in lines[2] and "v3" in lines[2]

    back = _cli("rollback", "--registry-uri", uri, "--reason", "v2 scores badly", s3_settings=s3_settings)
    assert back.returncode == 0, back.stderr
    champion = registry.read_champion(client, uri)
    assert (champion.version, champion.action, champion.generation, champion.previous) == ("v1", "rollback", 3, "v2")
    history = json.loads(_cli("history", "--registry-uri", uri, "--json", s3_settings=s3_settings).stdout)
    assert [(h["generation"], h["version"], h["action"]) for h in history] == [
        (1, "v1", "promote"), (2, "v2", "promote"), (3, "v1", "rollback")]
    assert history[-1]["reason"] == "v2 scores badly"
    # an incomplete version, and one whose model was replaced, are refused with the reason
    refused = _cli("rollback", "--registry-uri", uri, "--to", "v3", s3_settings=s3_settings)
    assert refused.returncode == 2 and "incomplete" in refused.stderr
    s3.write_bytes(client, s3.join(registry.version_uri(uri, "v2"), "model.zip"), b"tampered")
    refused = _cli("rollback", "--registry-uri", uri, "--to", "v2", s3_settings=s3_settings)
    assert refused.returncode == 2 and "does not match the SHA-256" in refused.stderr
    assert registry.read_champion(client, uri).version == "v1"


def test_a_create_or_swap_whose_response_was_lost_counts_as_done(s3_settings, s3_bucket, tmp_path, monkeypatch):
    """botocore retries a request whose response was lost; the retry of an applied conditional
    write gets 412 for the writer's own object: read back, it counts as done."""
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    s3.write_bytes(client, f"s3://{s3_bucket}/k", b"mine")
    assert s3.create_bytes(client, f"s3://{s3_bucket}/k", b"mine")  # the same bytes: ours
    with pytest.raises(PreconditionError):
        s3.create_bytes(client, f"s3://{s3_bucket}/k", b"someone else's")
    real = s3.swap_bytes

    def applied_then_lost(*args, **kwargs):
        real(*args, **kwargs)
        raise PreconditionError(args[1], "response lost, the retry got 412")

    a = _version(client, uri, tmp_path, "v1", 0.8, "2013-02-11")
    monkeypatch.setattr(s3, "swap_bytes", applied_then_lost)
    result = registry.promote(client, uri, GATE, a)
    assert result.decision.promote and result.attempts == 2 and result.pointer.version == "v1"
    assert [h.version for h in registry.history(client, uri)] == ["v1"]


def test_rollback_walks_back_and_records_the_gate_metric(s3_settings, s3_bucket, tmp_path):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    work = tmp_path / "w"
    work.mkdir()
    for name in ("v1", "v2", "v3"):  # training.metric logloss, the gate on auc
        d = work / name
        d.mkdir()
        (d / "model.zip").write_bytes(name.encode() * 50)
        registry.write_version(client, uri, name, d, {"metric": "logloss", "metrics": {"auc": 0.8, "logloss": 0.4},
                                                      "lineage": {"interval_end": "2013-02-11"}})
        registry.promote(client, uri, GATE, registry.Candidate(name, {"auc": 0.8}, "2013-02-04", "2013-02-11",
                                                               registry.sha256_file(d / "model.zip")))
    first = registry.rollback(client, uri)
    second = registry.rollback(client, uri)  # walks further back, never to the version just rolled away from
    assert (first.version, second.version) == ("v2", "v1")
    assert second.metric == "auc" and second.value == 0.8  # the gate's metric, so later models are compared
    assert registry.gate(GATE, {"auc": 0.5}, registry.read_champion(client, uri)).promote is False


def test_a_deleted_pointer_does_not_reuse_history_generations(s3_settings, s3_bucket, tmp_path):
    client = s3_settings.client()
    uri = f"s3://{s3_bucket}/models"
    a, b = (_version(client, uri, tmp_path, n, 0.8, "2013-02-11") for n in ("va", "vb"))
    registry.promote(client, uri, GATE, a)
    registry.promote(client, uri, GATE, b)
    client.delete_object(Bucket=s3_bucket, Key="models/champion.json")
    again = registry.promote(client, uri, GATE, a)
    assert again.pointer.generation == 3
    assert [(h.generation, h.version) for h in registry.history(client, uri)] == [(1, "va"), (2, "vb"), (3, "va")]

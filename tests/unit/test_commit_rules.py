"""Which attempts of a partition the commit keeps, retires and removes (pure rules of h2o_tasks.commit)."""

from datetime import UTC, datetime, timedelta

import pytest

from h2o_tasks import commit, testhooks

NOW = datetime(2013, 3, 1, 12, 0, tzinfo=UTC)


def _manifest(current, retired=()):
    return commit.Manifest("dt=2013-02-04", current, "s3://b/p/_attempts/" + current, [], 1, NOW.isoformat(), 3,
                           retired=[commit.Retired(a, "loc", None, t.isoformat()) for a, t in retired])


def _id(started):
    return f"{started:%Y%m%dT%H%M%S}-abcd1234-00ff00ff"


def test_new_attempts_are_unique_and_carry_their_start():
    a, b = commit.new_attempt("s3://b/p/dt=2013-02-04", "run", NOW), commit.new_attempt("s3://b/p/dt=2013-02-04", "run", NOW)
    assert a.id != b.id and a.started_at == b.started_at == NOW
    assert a.uri == f"s3://b/p/dt=2013-02-04/_attempts/{a.id}"


def test_removable_keeps_the_current_and_recently_retired_attempts():
    current, old, recent, orphan, young_orphan = (_id(NOW - timedelta(minutes=m)) for m in (1, 300, 200, 500, 10))
    manifest = _manifest(current, [(old, NOW - timedelta(minutes=90)), (recent, NOW - timedelta(minutes=5))])
    ages = {a: NOW - timedelta(minutes=m) for a, m in ((current, 1), (old, 300), (recent, 200), (orphan, 500),
                                                       (young_orphan, 10))}
    removed = commit.removable(manifest, ages, NOW, timedelta(minutes=60), timedelta(minutes=240))
    assert removed == sorted([old, orphan])  # retired over 60 min ago; never committed, not written for 240 min


def test_orphans_are_judged_by_their_last_write_not_by_the_clock_in_their_name():
    """A writer whose clock runs hours slow still wrote just now: its attempt is not abandoned."""
    current, slow_clock = _id(NOW), _id(NOW - timedelta(hours=5))
    manifest = _manifest(current)
    assert commit.removable(manifest, {current: NOW, slow_clock: NOW}, NOW, timedelta(hours=1), timedelta(hours=4)) == []


def test_the_current_attempt_is_never_removed():
    current, previous = _id(NOW), _id(NOW - timedelta(minutes=1))
    manifest = _manifest(current, [(previous, NOW - timedelta(hours=2))])
    ages = {current: NOW - timedelta(days=9), previous: NOW - timedelta(days=9)}
    assert commit.removable(manifest, ages, NOW, timedelta(minutes=1), timedelta(minutes=1)) == [previous]


def test_retire_appends_the_replaced_attempt_and_forgets_old_entries():
    first = _manifest("a", [("older", NOW - timedelta(days=3)), ("recent", NOW - timedelta(minutes=30))])
    retired = commit.retire(first, NOW, timedelta(hours=1))
    assert [r.attempt for r in retired] == ["recent", "a"]
    assert commit.retire(None, NOW, timedelta(hours=1)) == []


def test_manifest_round_trip():
    m = _manifest("a", [("b", NOW)])
    assert commit.Manifest.from_dict(m.to_dict()) == m


def test_test_hooks_refuse_unknown_steps(monkeypatch):
    monkeypatch.setenv(testhooks.ENV, '{"commit:after-nothing": "kill"}')
    with pytest.raises(ValueError, match="unknown step"):
        testhooks.checkpoint("commit:after-write")
    monkeypatch.setenv(testhooks.ENV, '{"commit:after-write": "sleep:0"}')
    testhooks.checkpoint("commit:after-write")
    with pytest.raises(ValueError, match="unknown test hook step"):
        testhooks.checkpoint("commit:somewhere")


def test_test_hooks_read_from_a_file_at_every_step(monkeypatch, tmp_path):
    hooks = tmp_path / "hooks.json"
    monkeypatch.setenv(testhooks.ENV, f"@{hooks}")
    testhooks.checkpoint("commit:after-write")  # no file: no actions
    hooks.write_text('{"commit:after-write": "sleep:0"}')
    testhooks.checkpoint("commit:after-write")
    hooks.write_text('{"commit:after-write": "bogus"}')
    with pytest.raises(ValueError, match="unknown action"):
        testhooks.checkpoint("commit:after-write")

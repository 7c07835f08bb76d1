"""The local backend's claim of a cluster (a real flock), as the watchdog meets it: without JVMs."""

from __future__ import annotations

import fcntl
import os
import threading
from datetime import UTC, datetime, timedelta

from h2o_tasks.cluster import local, watchdog


def _expired(backend: local.LocalBackend, name: str, ceiling_at: str | None = None) -> str:
    """A cluster of ``name`` whose one node is gone and whose expiry is 5 minutes past (no JVM); that expiry."""
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    backend._dir(name).mkdir(parents=True)
    dead = [local.NodeState(pid=2**22 + 1, port=1, log="")]  # above any pid_max: no process
    backend._save(local.LocalState(name=name, replicas=1, nodes=dead, created_at=past, expires_at=past, labels={},
                                   ceiling_at=ceiling_at or past))
    return past


def test_the_watchdog_waits_out_a_claim_and_then_stops_the_cluster(tmp_path, monkeypatch):
    """At its ceiling the watchdog meets a create or delete that still holds the cluster: it keeps
    guarding and deletes the cluster once the claim is let go (it gave up for good before)."""
    backend = local.LocalBackend(state_dir=tmp_path)
    _expired(backend, "h2o-c")
    (tmp_path / "locks").mkdir()
    fd = os.open(tmp_path / "locks" / "h2o-c.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a second open file: held as another process would hold it
    monkeypatch.setattr(local, "CLAIM_TIMEOUT_S", 0.2)
    monkeypatch.setattr(watchdog, "POLL_S", 0.05)
    tries = []
    real_delete = local.LocalBackend.delete

    def delete(self, info, timeout_s=15.0):
        tries.append(1)
        if len(tries) == 3:
            os.close(fd)  # the holder ends
        return real_delete(self, info, timeout_s)

    monkeypatch.setattr(local.LocalBackend, "delete", delete)
    done = []
    t = threading.Thread(target=lambda: done.append(watchdog.main(str(tmp_path), "h2o-c")), daemon=True)
    t.start()
    t.join(30)
    assert done == [0] and len(tries) == 3 and backend.list_clusters() == []


def test_the_janitors_delete_keeps_a_cluster_extended_after_its_listing(tmp_path, monkeypatch):
    """The janitor decides on a listing; a task of the run may extend the cluster before the delete. The
    delete compares the expiry under the claim, and an extend takes the same claim."""
    import pytest

    from h2o_tasks.errors import ClusterError

    backend = local.LocalBackend(state_dir=tmp_path)
    _expired(backend, "h2o-j", ceiling_at=(datetime.now(UTC) + timedelta(minutes=60)).isoformat())
    listed = backend.list_expired()[0]
    local.LocalBackend(state_dir=tmp_path).extend(listed, timedelta(minutes=10))  # the run's next task
    assert backend.delete(listed, if_unchanged=True) is False
    assert [c.name for c in backend.list_clusters()] == ["h2o-j"]
    fd = os.open(tmp_path / "locks" / "h2o-j.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a janitor's delete under way: the extend waits for it
    monkeypatch.setattr(local, "CLAIM_TIMEOUT_S", 0.2)
    with pytest.raises(ClusterError) as busy:
        backend.extend(listed, timedelta(minutes=10))
    assert busy.value.reason == "Busy"
    os.close(fd)
    assert backend.delete(backend.list_clusters()[0], if_unchanged=True) is True
    assert backend.list_clusters() == []


def test_an_extend_that_leaves_the_expiry_where_it_was_still_keeps_the_cluster(tmp_path):
    """At its ceiling an extend cannot push the expiry: it is still a new version, which the janitor's
    decision on the older listing does not outlive."""
    backend = local.LocalBackend(state_dir=tmp_path)
    past = _expired(backend, "h2o-k")
    listed = backend.list_expired()[0]
    assert backend.extend(listed, timedelta(minutes=10)) == past  # capped: the expiry did not move
    assert backend.delete(listed, if_unchanged=True) is False
    assert backend.delete(backend.list_clusters()[0], if_unchanged=True) is True


def test_the_lock_file_goes_with_the_cluster_and_a_waiter_on_the_removed_file_does_not_share_the_claim(
        tmp_path, monkeypatch):
    """The last holder removes the lock file when no cluster is left. A waiter that had opened the old
    file wins a lock no one else sees; it must notice and queue on the path's new file behind whoever
    took that one (three backends, as three processes would be)."""
    import time

    first, waiter, third = (local.LocalBackend(state_dir=tmp_path) for _ in range(3))
    waiting, go, order = threading.Event(), threading.Event(), []

    class Clock:  # the waiter's poll: it tells us it waits, then waits for the scene to be set
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(s):
            waiting.set()
            go.wait(10)
            time.sleep(0.01)

    def wait_in_line():
        with waiter._claim("h2o-l"):
            order.append("waiter in")

    with first._claim("h2o-l"):
        monkeypatch.setattr(local, "time", Clock)
        t = threading.Thread(target=wait_in_line, daemon=True)
        t.start()
        assert waiting.wait(10)  # the waiter holds the old file open and polls its lock
    assert not (tmp_path / "locks" / "h2o-l.lock").exists()  # no cluster: the file went with the claim
    with third._claim("h2o-l"):  # a new file at the path, locked
        go.set()
        t.join(0.5)  # the waiter locks the removed file meanwhile; it must not come in
        order.append("third out")
    t.join(10)
    assert order == ["third out", "waiter in"]
    assert os.listdir(tmp_path / "locks") == []


def test_a_cluster_keeps_its_lock_file_until_it_is_deleted(tmp_path):
    backend = local.LocalBackend(state_dir=tmp_path)
    _expired(backend, "h2o-f")
    backend.extend(backend.list_clusters()[0], timedelta(minutes=10))
    assert (tmp_path / "locks" / "h2o-f.lock").exists()  # the cluster is there: others may queue on it
    assert backend.delete("h2o-f") is True
    assert os.listdir(tmp_path / "locks") == []


def _standing_in(backend: local.LocalBackend, name: str) -> tuple[str, object]:
    """An expired cluster of ``name`` whose one node is alive: a sleeping process named as its JVM would be."""
    import subprocess
    import sys

    node = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "-name", name])
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    backend._dir(name).mkdir(parents=True)
    backend._save(local.LocalState(name=name, replicas=1, nodes=[local.NodeState(pid=node.pid, port=1, log="")],
                                   created_at=past, expires_at=past, labels={}))
    return past, node


def test_a_retrys_re_attach_is_a_new_version_the_janitors_listing_does_not_outlive(tmp_path):
    """The janitor lists an expired cluster; a retry of the run's create re-attaches to it before the
    delete. The re-attach stamps the cluster under the claim, so the delete decided on the listing keeps it."""
    from h2o_tasks.cluster.base import ClusterSpec
    from h2o_tasks.config import ClusterConfig

    backend = local.LocalBackend(state_dir=tmp_path)
    _, node = _standing_in(backend, "h2o-r")
    try:
        listed = backend.list_expired()[0]
        spec = ClusterSpec(name="h2o-r", pipeline="p", dag_id="d", run_id="r", config=ClusterConfig(replicas=1))
        again = local.LocalBackend(state_dir=tmp_path).create(spec)  # the retry: re-attached, nothing started
        assert (again.uid, again.url) == (listed.uid, listed.url) and again.extended_at > listed.extended_at
        assert backend.delete(listed, if_unchanged=True) is False
        assert node.poll() is None  # its node was not stopped
    finally:
        backend.delete("h2o-r")
    assert node.wait(10) is not None


def test_the_janitors_delete_keeps_a_cluster_made_again_or_unreadable(tmp_path):
    """The compare is on the incarnation too: a cluster its run made again with the same expiry is not
    the one listed, and neither is a state that cannot be read."""
    backend = local.LocalBackend(state_dir=tmp_path)
    _expired(backend, "h2o-u")
    listed = backend.list_expired()[0]
    state = backend._load("h2o-u")
    state.created_at = datetime.now(UTC).isoformat()  # made again (same expiry, never extended)
    backend._save(state)
    assert backend.delete(listed, if_unchanged=True) is False
    (backend._dir("h2o-u") / "state.json").write_text("{")  # a state written by no one we know
    assert backend.delete(listed, if_unchanged=True) is False
    assert backend._dir("h2o-u").exists()
    assert backend.delete("h2o-u") is True  # the run's own teardown still removes it

"""The local backend with real H2O JVMs: a multi-node cloud, re-attach, failure, delete."""

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from h2o_tasks.cluster.base import ClusterSpec
from h2o_tasks.cluster.local import LocalBackend, _proc_state
from h2o_tasks.cluster.readiness import fetch_cloud
from h2o_tasks.config import ClusterConfig
from h2o_tasks.errors import ClusterError

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(tmp_path):
    b = LocalBackend(state_dir=tmp_path)
    yield b
    for info in b.list_clusters():  # clean up even when a test failed
        b.delete(info)


def spec(run_id, **kw):
    return ClusterSpec.for_run("t", "dag", run_id, ClusterConfig(replicas=2, memory="512m", nthreads=1, **kw))


def test_two_jvms_form_one_cloud_reattach_and_delete(backend):
    info = backend.create(spec("r1", jvm_options=("-XX:TieredStopAtLevel=1", "-Dh2o.test.marker=r1")))
    st = backend.wait_ready(info, 120)  # the java launcher may re-exec itself at start (its cmdline reads empty)
    for node in backend._load(info.name).nodes:  # cluster.jvm_options reach every JVM
        argv = Path(f"/proc/{node.pid}/cmdline").read_bytes().split(b"\0")
        assert b"-XX:TieredStopAtLevel=1" in argv and b"-Dh2o.test.marker=r1" in argv
    assert st.ready and st.cloud_size == 2
    cloud = fetch_cloud(info.url)
    assert cloud.cloud_size == 2 and cloud.consensus and cloud.cloud_name == info.name
    again = backend.create(spec("r1"))  # a retry of the same run re-attaches
    assert again.url == info.url
    pids = [n["pid"] if isinstance(n, dict) else n.pid for n in backend._load(info.name).nodes]
    assert backend.delete(info) is True
    assert all(_proc_state(p) in ("", "Z") for p in pids)
    assert backend.delete(info) is False  # NotFound is success for a teardown
    assert backend.list_clusters() == []


def test_node_death_fails_fast_with_reason(backend):
    info = backend.create(spec("r2"))
    os.kill(backend._load(info.name).nodes[1].pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(ClusterError) as err:
        backend.wait_ready(info, 120)
    assert err.value.reason == "NodeExited" and time.monotonic() - t0 < 10
    assert "node 1" in str(err.value)


def test_list_expired(backend):
    info = backend.create(spec("r3"))
    assert backend.list_expired() == []
    later = datetime.now(UTC) + timedelta(minutes=200)
    assert [c.name for c in backend.list_expired(later)] == [info.name]

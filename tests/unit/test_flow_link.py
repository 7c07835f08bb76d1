"""The H2O Flow extra link of the create task points at the cluster that task instance pushed (or nowhere
while its address is unknown), read through Airflow's own XCom API as the task runner reads it when it
stores the task's links (the supervisor channel held in memory: tests/fixtures/xcom.py)."""

from __future__ import annotations

from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.providers.common.compat.sdk import XCom

from h2o_airflow.links import XCOM_CLUSTER_KEY, H2OFlowLink
from h2o_airflow.operators.cluster import H2OCreateClusterOperator
from h2o_tasks.cluster import ClusterInfo


def push(ti_key: TaskInstanceKey, info: ClusterInfo) -> None:
    """What the create task's ``xcom_push(key=XCOM_CLUSTER_KEY, ...)`` stores."""
    XCom.set(XCOM_CLUSTER_KEY, info.to_dict(), dag_id=ti_key.dag_id, task_id=ti_key.task_id, run_id=ti_key.run_id,
             map_index=ti_key.map_index)


def test_the_link_opens_flow_on_the_cluster_its_task_instance_pushed(supervisor, monkeypatch):
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)  # unset: a path on the UI's own origin
    op = H2OCreateClusterOperator(task_id="create_cluster", pipeline="p.yaml")
    (link,) = [x for x in op.operator_extra_links if isinstance(x, H2OFlowLink)]
    assert link.name == "H2O Flow"
    run1 = TaskInstanceKey("h2o_train__x", "create_cluster", "manual__1", try_number=1, map_index=-1)
    run2 = run1._replace(run_id="manual__2")

    assert link.get_link(op, ti_key=run1) == ""  # nothing pushed yet
    # the create task records the cluster before creating it, with no address yet
    push(run1, ClusterInfo(name="h2o-x-1", backend="kubernetes", namespace="h2o", dag_id=run1.dag_id,
                           run_id=run1.run_id))
    assert link.get_link(op, ti_key=run1) == ""
    push(run1, ClusterInfo(name="h2o-x-1", backend="kubernetes", url="http://10.0.0.5:54321/", replicas=3))
    # a cluster address a browser outside Kubernetes cannot reach: the plugin's page with the port-forward
    page = "/h2o/flow/h2o_train__x/manual__1/create_cluster"
    assert link.get_link(op, ti_key=run1) == page

    assert link.get_link(op, ti_key=run2) == ""  # another run's task instance: not run 1's cluster
    push(run2, ClusterInfo(name="h2o-x-2", backend="local", url="http://127.0.0.1:54400"))
    assert link.get_link(op, ti_key=run2) == "http://127.0.0.1:54400/flow/index.html"
    assert link.get_link(op, ti_key=run1) == page


def test_with_an_ingress_the_link_opens_flow_through_it(supervisor):
    op = H2OCreateClusterOperator(task_id="create_cluster", pipeline="p.yaml")
    (link,) = [x for x in op.operator_extra_links if isinstance(x, H2OFlowLink)]
    key = TaskInstanceKey("h2o_train__x", "create_cluster", "manual__3", try_number=1, map_index=-1)
    push(key, ClusterInfo(name="h2o-x-3", backend="kubernetes", url="http://h2o-x-3.h2o.svc.cluster.local:54321",
                          ingress_url="https://h2o-x-3.ml.example.com"))
    assert link.get_link(op, ti_key=key) == "https://h2o-x-3.ml.example.com/flow/index.html"

"""Pages served by Airflow's API server behind Airflow's own login and DAG permissions: a FastAPI app
the plugin mounts at ``/h2o``. Each reads what a task instance pushed to XCom, never an address or URI
from the request, and needs read access to the DAG's XComs, as the XCom API does (the UI's session
cookie or a bearer token both serve).

- ``GET /h2o/reports/{dag_id}/{run_id}/{task_id}``: the model report the export task wrote, fetched
  from S3 with the task's AWS connection (the amazon provider's S3 hook) and served sandboxed (a unique
  origin, no scripts), so nothing in it runs with the user's Airflow session.
- ``GET /h2o/flow/{dag_id}/{run_id}/{task_id}``: how to open H2O Flow on a Kubernetes cluster that has
  no Ingress, whose address a browser outside the cluster cannot reach: the exact ``kubectl
  port-forward`` to the run's leader (through its client Service, which selects only the ready
  leader), where to read the REST login, and the local URL to open.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import HTMLResponse

from h2o_airflow.links import XCOM_CLUSTER_KEY, XCOM_REPORT_KEY

# the report is one self-contained page: inline styles and data-URI images, nothing to fetch or run
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}

app = FastAPI(title="H2O on Airflow", description=__doc__.split("\n\n")[0])
READ_XCOM = [Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.XCOM))]


def _pushed(session: Any, key: str, dag_id: str, run_id: str, task_id: str, map_index: int, missing: str) -> Any:
    from airflow.models.xcom import XComModel

    row = session.scalars(XComModel.get_many(run_id=run_id, key=key, task_ids=task_id, dag_ids=dag_id,
                                             map_indexes=map_index, limit=1)).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{dag_id} / {run_id} / {task_id} {missing}")
    return XComModel.deserialize_value(row)


@app.get("/reports/{dag_id}/{run_id}/{task_id}", response_class=HTMLResponse, dependencies=READ_XCOM)
def model_report(dag_id: str, run_id: str, task_id: str, session: SessionDep,
                 map_index: Annotated[int, Query(ge=-1)] = -1) -> HTMLResponse:
    """The report page the task instance exported."""
    pushed = _pushed(session, XCOM_REPORT_KEY, dag_id, run_id, task_id, map_index,
                     "exported no model report (yet): its export task pushes one when the model's page is written")
    uri = pushed.get("uri", "") if isinstance(pushed, dict) else ""
    if not uri.startswith("s3://"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the pushed model report names no S3 object: {pushed!r}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return HTMLResponse(_read(bucket, key, pushed.get("aws_conn_id", "aws_default")), headers=REPORT_HEADERS)


def _read(bucket: str, key: str, aws_conn_id: str | None) -> bytes:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return S3Hook(aws_conn_id=aws_conn_id).get_key(key, bucket).get()["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"s3://{bucket}/{key} is gone (a retention rule or a deleted version?)") from None
        raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                            f"S3 refused s3://{bucket}/{key} to connection {aws_conn_id!r}: {code}") from None
    except BotoCoreError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"S3 unreachable for s3://{bucket}/{key}: {exc}") from None


@app.get("/flow/{dag_id}/{run_id}/{task_id}", response_class=HTMLResponse, dependencies=READ_XCOM)
def flow_help(dag_id: str, run_id: str, task_id: str, session: SessionDep,
              map_index: Annotated[int, Query(ge=-1)] = -1) -> HTMLResponse:
    """How to reach H2O Flow on the cluster the task instance created, from the user's machine."""
    from h2o_tasks.cluster import ClusterInfo
    from h2o_tasks.cluster.login import hint
    from h2o_tasks.cluster.manifests import service_names

    pushed = _pushed(session, XCOM_CLUSTER_KEY, dag_id, run_id, task_id, map_index, "created no H2O cluster (yet)")
    info = ClusterInfo.from_dict(pushed)
    if info.backend != "kubernetes":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{info.name} is a {info.backend} cluster: open {info.flow_url}")
    forward = f"kubectl --namespace {info.namespace} port-forward service/{service_names(info.name)[1]} 54321:54321"
    local = f"{'https' if info.tls_secret else 'http'}://localhost:54321/flow/index.html"
    tls = (f"<p>The cluster serves HTTPS (<code>cluster.tls</code>): its certificate is signed by the CA under key "
           f"<code>{escape(info.tls_ca_key)}</code> of Secret <code>{escape(info.tls_secret)}</code>, which the browser "
           "must trust (or the certificate must name localhost).</p>") if info.tls_secret else ""
    page = FLOW_PAGE.format(name=escape(info.name), forward=escape(forward), login=escape(hint(info)),
                            url=escape(info.flow_url), run=escape(f"{dag_id} / {run_id}"), local=escape(local), tls=tls)
    return HTMLResponse(page, headers={**REPORT_HEADERS, "Content-Security-Policy": "default-src 'none'; "
                                       "style-src 'unsafe-inline'"})


FLOW_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>H2O Flow: {name}</title>
<style>body{{font-family:sans-serif;max-width:52em;margin:2em auto}}pre{{background:#f4f4f4;padding:.8em;
white-space:pre-wrap}}</style></head><body>
<h1>H2O Flow on {name}</h1>
<p>Run {run}. The cluster runs on Kubernetes without an Ingress (<code>cluster.ingress</code> in the
pipeline file gives it one), so a browser outside the cluster reaches it through a port-forward.
The cluster lives only while its run does.</p>
<ol>
<li>Forward a local port to the run's H2O leader (its client Service selects only the ready leader):
<pre>{forward}</pre></li>
<li>Open <a href="{local}">{local}</a>
and log in with the cluster's REST login:<pre>{login}</pre>{tls}</li>
</ol>
<p>Inside the cluster's network, Flow is at <code>{url}</code>.</p>
</body></html>
"""

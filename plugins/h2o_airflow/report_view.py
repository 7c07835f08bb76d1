"""The model report, served by Airflow's API server behind Airflow's own login and DAG permissions.

A FastAPI app the plugin mounts at ``/h2o``. ``GET /h2o/reports/{dag_id}/{run_id}/{task_id}`` reads the
report the export task pushed to XCom (its S3 URI and AWS connection: never a URI from the request, so a
user cannot make the server read another object), fetches the page with the amazon provider's S3 hook,
and returns it. The caller needs read access to the DAG's XComs, as for the XCom API; the UI's session
cookie or a bearer token both serve. The page is served sandboxed (a unique origin, no scripts), so
nothing in it runs with the user's Airflow session.
"""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import HTMLResponse

from h2o_airflow.links import XCOM_REPORT_KEY

# the report is one self-contained page: inline styles and data-URI images, nothing to fetch or run
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}

app = FastAPI(title="H2O model reports", description=__doc__.split("\n\n")[0])


@app.get("/reports/{dag_id}/{run_id}/{task_id}", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.XCOM))])
def model_report(dag_id: str, run_id: str, task_id: str, session: SessionDep,
                 map_index: Annotated[int, Query(ge=-1)] = -1) -> HTMLResponse:
    """The report page the task instance exported."""
    from airflow.models.xcom import XComModel

    row = session.scalars(XComModel.get_many(run_id=run_id, key=XCOM_REPORT_KEY, task_ids=task_id, dag_ids=dag_id,
                                             map_indexes=map_index, limit=1)).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"{dag_id} / {run_id} / {task_id} exported no model report (yet): its export task "
                            "pushes one when the model's page is written")
    pushed = XComModel.deserialize_value(row)
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

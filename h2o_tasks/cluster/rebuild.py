"""What a task needs in its run's cluster, made again when the cluster was rebuilt after losing a node.

H2O does not heal a cloud that lost a node. With ``cluster.rebuild_on_loss`` (the default), the
task that saw the loss fails retryably; its retry deletes the cluster, creates it again under the
same name (:func:`rebuild`), and takes again the steps whose results lived in the lost cloud:
the import (:func:`h2o_tasks.ingest.import_training`), the training (same seed, same model ids:
:func:`model`), the scoring days' frames. Frames and model ids are named from the pipeline and
the run only, so the next tasks find them as they would have.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from h2o_tasks.cluster.base import ClusterBackend, ClusterInfo, ClusterSpec
from h2o_tasks.config import ClusterConfig


def rebuild(backend: ClusterBackend, info: ClusterInfo, config: ClusterConfig, pipeline: str, dag_id: str,
            run_id: str, *, s3_endpoint: str = "") -> ClusterInfo:
    """Delete the lost cluster and create it again: same name, same run, the run's original ceiling."""
    spec = ClusterSpec.for_run(pipeline, dag_id, run_id, config, s3_endpoint=s3_endpoint)
    spec = dataclasses.replace(spec, name=info.name, ceiling_at=datetime.fromisoformat(info.ceiling_at)
                               if info.ceiling_at else spec.ceiling_at)
    backend.delete(info)
    new = backend.create(spec)
    try:
        backend.wait_ready(new, config.ready_timeout_s)
        return dataclasses.replace(new, url=backend.endpoint(new))
    except BaseException:
        backend.delete(new)
        raise


def frame(h2o: Any, frame_id: str, make: Callable[[], dict[str, Any]]) -> Any:
    """The frame ``frame_id`` of this cluster; made again by ``make`` (an import) when it is not there."""
    found = h2o.get_frame(frame_id)
    if found is not None:
        return found
    made = make()
    return h2o.get_frame(made["frame_id"])


def model(h2o: Any, model_id: str, retrain: Callable[[], Any]) -> Any:
    """The model ``model_id`` of this cluster; trained again by ``retrain`` (same seed, same ids) when gone."""
    from h2o.exceptions import H2OResponseError

    try:
        return h2o.get_model(model_id)
    except H2OResponseError:
        result = retrain()
        return h2o.get_model(result.best_model_id)

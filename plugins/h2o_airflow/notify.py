"""The pipeline file's ``notify:`` section as Airflow notifiers of the smtp and http providers.

A task's failure and a model that does not become champion are told to each notifier named for
that event. The message is built here from the run (no Jinja rendering of an error text that may
hold braces); the provider's notifier sends it. A notifier that cannot send is logged and never
changes the task's outcome: the failure or the export already happened.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from typing import Any

from h2o_tasks.config import NotifierConfig

log = logging.getLogger(__name__)


def notifier(n: NotifierConfig, subject: str, message: dict[str, Any]) -> Any:
    """The provider's notifier for ``n``, carrying ``subject`` and ``message`` (a JSON body for http; an
    HTML table for smtp)."""
    if n.kind == "http":
        from airflow.providers.http.notifications.http import HttpNotifier

        return HttpNotifier(http_conn_id=n.conn_id or "http_default", endpoint=n.endpoint or None, method="POST",
                            json={"subject": subject, **message}, headers={"Content-Type": "application/json"})
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    rows = "".join(f"<tr><th align=left>{html.escape(str(k))}</th><td><pre>{html.escape(_text(v))}</pre></td></tr>"
                   for k, v in message.items())
    return SmtpNotifier(to=list(n.to), subject=subject, html_content=f"<table>{rows}</table>",
                        **({"smtp_conn_id": n.conn_id} if n.conn_id else {}))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=1, default=str)


def send(notifiers: Sequence[NotifierConfig], subject: str, message: dict[str, Any], context: Any) -> int:
    """Send to every notifier; how many sent (a failed send is logged, never raised)."""
    sent = 0
    for n in notifiers:
        try:
            notifier(n, subject, message).notify(context)
            sent += 1
        except Exception as exc:
            log.warning("notify (%s %s) failed: %s", n.kind, n.conn_id or "default connection", exc)
    return sent


class OnTaskFailure:
    """``on_failure_callback`` of every task of a pipeline's DAGs: tells ``notify.on_failure``."""

    def __init__(self, pipeline: str, notifiers: Sequence[NotifierConfig]) -> None:
        self.pipeline = pipeline
        self.notifiers = tuple(notifiers)

    def __call__(self, context: Any) -> None:
        ti = context.get("ti") or context.get("task_instance")
        dag_id, task_id = getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?")
        message = {"event": "task_failed", "pipeline": self.pipeline, "dag_id": dag_id, "run_id": context.get("run_id"),
                   "task_id": task_id, "try_number": getattr(ti, "try_number", None),
                   "error": f"{type(context.get('exception')).__name__}: {context.get('exception')}"
                   if context.get("exception") is not None else None}
        send(self.notifiers, f"[h2o-airflow] {self.pipeline}: {dag_id} / {task_id} failed", message, context)


def gate_refused(pipeline: str, notifiers: Sequence[NotifierConfig], outcome: dict[str, Any], context: Any) -> int:
    """Tell ``notify.on_gate_refused`` that the exported version did not become champion, and why."""
    champion = outcome.get("champion") or {}
    message = {"event": "gate_refused", "pipeline": pipeline, "dag_id": getattr(context.get("dag"), "dag_id", None),
               "run_id": context.get("run_id"), "version": outcome.get("version"), "reason": outcome.get("reason"),
               "metrics": outcome.get("metrics"), "champion_version": champion.get("version"),
               "champion_metric": {champion["metric"]: champion["value"]} if champion.get("metric") else None}
    return send(notifiers, f"[h2o-airflow] {pipeline}: model {outcome.get('version')} not promoted", message, context)

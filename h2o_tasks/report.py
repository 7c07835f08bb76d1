"""The model report, one self-contained HTML page: the validation metrics; the quality gate's decision
with the champion beside; every algorithm of the run; the data window, its rows and class balance;
ROC, precision-recall and gains/lift (binary) or residuals (regression), variable importance; the
confusion matrix and per-class figures of a classifier."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from h2o_tasks.config import PipelineConfig


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _saved(plt: Any, fig: Any, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _square(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any, Any]:
    """A 5x5 inch figure with its labels: the ROC and precision-recall plots."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return plt, fig, ax


def roc_png(perf: Any, path: Path, title: str) -> bool:
    try:
        fpr, tpr = perf.roc()
    except Exception:
        return False
    plt, fig, ax = _square(title, "false positive rate", "true positive rate")
    ax.plot(fpr, tpr, label=f"AUC = {perf.auc():.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.legend(loc="lower right")
    return _saved(plt, fig, path)


def pr_png(perf: Any, path: Path, title: str) -> bool:
    """Precision against recall over the thresholds H2O scored (a binary classifier)."""
    try:
        df = perf.thresholds_and_metric_scores().as_data_frame()
        recall, precision = df["recall"].astype(float), df["precision"].astype(float)
    except Exception:
        return False
    plt, fig, ax = _square(title, "recall", "precision")
    ax.plot(recall, precision)
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    return _saved(plt, fig, path)


def gains_lift_png(perf: Any, path: Path, title: str) -> bool:
    """Cumulative lift and capture rate by the fraction of rows taken in score order (a binary classifier)."""
    try:
        df = perf.gains_lift().as_data_frame()
        frac = df["cumulative_data_fraction"].astype(float)
        lift, capture = df["cumulative_lift"].astype(float), df["cumulative_capture_rate"].astype(float)
    except Exception:
        return False
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4), dpi=100)
    a1.plot(frac, capture, label="model")
    a1.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    a1.set(xlabel="fraction of rows (highest scores first)", ylabel="cumulative capture rate", title="gains")
    a1.legend(loc="lower right")
    a2.plot(frac, lift)
    a2.axhline(1, linestyle="--", color="grey")
    a2.set(xlabel="fraction of rows (highest scores first)", ylabel="cumulative lift", title="lift")
    fig.suptitle(title)
    return _saved(plt, fig, path)


RESIDUAL_ROWS = 50_000


def residual_points(model: Any, frame: Any, label: str, max_rows: int = RESIDUAL_ROWS, seed: int = 42) -> list[tuple[float, float]]:
    """(actual, predicted) for the rows of ``frame`` with a label; a random sample above ``max_rows``."""
    import h2o

    rows = frame[~frame[label].isna(), :]
    if rows.nrows > max_rows:
        rows = rows[rows.runif(seed) < max_rows / rows.nrows, :]
    if rows.nrows == 0:
        return []
    preds = model.predict(rows)
    try:
        table = rows[label].cbind(preds["predict"]).as_data_frame(use_pandas=False, header=False)
    finally:
        h2o.remove(preds)
    return [(float(a), float(p)) for a, p in table if a not in ("", None) and p not in ("", None)]


def residuals_png(points: list[tuple[float, float]], path: Path, title: str) -> bool:
    """Predicted against actual, and the histogram of residuals (actual - predicted)."""
    if not points:
        return False
    actual = [a for a, _ in points]
    predicted = [p for _, p in points]
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5), dpi=100)
    left.scatter(actual, predicted, s=4, alpha=0.3)
    lo, hi = min(min(actual), min(predicted)), max(max(actual), max(predicted))
    left.plot([lo, hi], [lo, hi], linestyle="--", color="grey")
    left.set(xlabel="actual", ylabel="predicted", title="predicted vs actual")
    right.hist([a - p for a, p in points], bins=50)
    right.set(xlabel="residual (actual - predicted)", ylabel="rows", title="residuals")
    fig.suptitle(f"{title} ({len(points)} rows)")
    return _saved(plt, fig, path)


@dataclass(frozen=True)
class Confusion:
    """A classifier's confusion matrix: ``counts[actual][predicted]``, classes in the label's order."""

    classes: list[str]
    counts: list[list[int]]

    def per_class(self) -> list[dict[str, Any]]:
        """Support, precision, recall and F1 of each class (None where undefined)."""
        out = []
        for i, name in enumerate(self.classes):
            hit, actual = self.counts[i][i], sum(self.counts[i])
            predicted = sum(row[i] for row in self.counts)
            precision = hit / predicted if predicted else None
            recall = hit / actual if actual else None
            f1 = (2 * precision * recall / (precision + recall) if precision is not None and recall is not None
                  and precision + recall else None)
            out.append({"class": name, "support": actual, "precision": precision, "recall": recall, "f1": f1})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.classes, "counts": self.counts, "per_class": self.per_class()}


def confusion(perf: Any) -> Confusion | None:
    """The confusion matrix H2O computed (a binary model's at its max-F1 threshold), or None."""
    try:
        cm = perf.confusion_matrix()
        df = getattr(cm, "table", cm).as_data_frame()
    except Exception:
        return None
    classes = [str(c) for c in df.columns if str(c) not in ("", "Error", "Rate")]
    if not classes:
        return None
    counts = [[round(float(df.iloc[i][c])) for c in classes] for i in range(len(classes))]
    return Confusion(classes, counts)


def _confusion_html(c: Confusion) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in c.classes)
    rows = "".join(f"<tr><th>{html.escape(k)}</th>{''.join(f'<td>{n}</td>' for n in row)}</tr>"
                   for k, row in zip(c.classes, c.counts, strict=True))

    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.4f}"

    per = "".join(f"<tr><td>{html.escape(r['class'])}</td><td>{r['support']}</td><td>{fmt(r['precision'])}</td>"
                  f"<td>{fmt(r['recall'])}</td><td>{fmt(r['f1'])}</td></tr>" for r in c.per_class())
    return (f'<h2>Confusion matrix</h2><table class="cm"><tr><th>actual \\ predicted</th>{head}</tr>{rows}</table>'
            "<h2>Per class</h2><table><tr><th>class</th><th>support</th><th>precision</th><th>recall</th>"
            f"<th>F1</th></tr>{per}</table>")


@dataclass(frozen=True)
class Review:
    """What a reviewer needs beside the model's own figures to approve it."""

    decision: Any = None  # registry.GateDecision, as the gate decided at export
    champion: Any = None  # registry.ChampionPointer then, or None
    metric: str = ""
    leaderboard: dict[str, float] | None = None  # every algorithm of the run, by the training metric
    training_metric: str = ""
    interval: tuple[str, str] | None = None  # the run's data interval, as the promotion policy compares it
    lineage: dict[str, Any] | None = None  # the import task's: source, start, end, rows
    train_rows: int | None = None
    valid_rows: int | None = None


def class_balance(frame: Any, label: str) -> dict[str, int]:
    """Rows per class of ``label`` in an H2O frame (empty when it cannot be counted)."""
    try:
        df = frame[label].table().as_data_frame()
    except Exception:
        return {}
    return {str(row.iloc[0]): int(row.iloc[1]) for _, row in df.iterrows()}


def _review_html(r: Review, metrics: dict[str, float], balance: dict[str, int], frame_name: str) -> str:
    def num(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    parts = []
    if r.decision is not None:
        verdict = "passes" if r.decision.promote else "does not pass"
        champ = (f"<tr><td>champion {html.escape(r.champion.version)}</td><td>{num(r.champion.value)}</td>"
                 f"<td>{html.escape(r.champion.interval_start or '?')} to {html.escape(r.champion.interval_end or '?')}"
                 "</td></tr>" if r.champion is not None else "<tr><td>champion</td><td colspan=2>none yet</td></tr>")
        parts.append(f"<h2>Quality gate</h2><p>At export this model <b>{verdict}</b> the gate: "
                     f"{html.escape(r.decision.reason)}. (The promotion itself is a compare-and-swap on "
                     "<code>champion.json</code> right after; that pointer and <code>history/</code> are the record.)</p>"
                     f"<table><tr><th></th><th>{html.escape(r.metric)}</th><th>run's data interval</th></tr>"
                     f"<tr><td>this model</td><td>{num(metrics.get(r.metric))}</td><td>"
                     f"{' to '.join(html.escape(d) for d in r.interval) if r.interval else '?'}</td></tr>"
                     f"{champ}</table>")
    if r.leaderboard:
        rows = "".join(f"<tr><td>{html.escape(a)}</td><td>{num(v)}</td></tr>" for a, v in r.leaderboard.items())
        parts.append(f"<h2>Models trained in this run</h2><table><tr><th>algorithm</th>"
                     f"<th>{html.escape(r.training_metric)}</th></tr>{rows}</table>")
    data = []
    if r.lineage:
        data.append(f"<tr><td>source</td><td>{html.escape(str(r.lineage.get('source', '')))}</td></tr>"
                    f"<tr><td>window</td><td>{html.escape(str(r.lineage.get('start')))} to "
                    f"{html.escape(str(r.lineage.get('end')))} (end excluded)</td></tr>"
                    f"<tr><td>rows imported</td><td>{html.escape(str(r.lineage.get('rows')))}</td></tr>")
    if r.train_rows is not None:
        data.append(f"<tr><td>training rows</td><td>{r.train_rows}</td></tr>"
                    f"<tr><td>validation rows</td><td>{r.valid_rows or 'none (cross-validation)'}</td></tr>")
    if balance:
        total = sum(balance.values()) or 1
        data.append("".join(f"<tr><td>class {html.escape(k)} ({html.escape(frame_name)})</td><td>{n} "
                            f"({100 * n / total:.1f}%)</td></tr>" for k, n in balance.items()))
    if data:
        parts.append(f"<h2>Data</h2><table>{''.join(data)}</table>")
    return "".join(parts)


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
    return _saved(plt, fig, path)


def write(out: Path, model: Any, perf: Any, cfg: PipelineConfig, metrics: dict[str, float], version: str,
          frame: Any = None, frame_name: str = "validation", review: Review | None = None) -> list[str]:
    """Write the PNGs and ``index.html`` (self-contained: the PNGs are inside it) into ``out``; returns the file names.

    Binary: the ROC curve. Classifiers: the confusion matrix and per-class figures (also in
    ``confusion.json``). Regression: residuals on ``frame`` (``frame_name`` says which rows).
    """
    files = []
    notes = []
    matrix = confusion(perf) if cfg.target.problem != "regression" else None
    if matrix is not None:
        (out / "confusion.json").write_text(json.dumps(matrix.to_dict(), indent=1))
        files.append("confusion.json")
    if cfg.target.problem == "binary":
        if roc_png(perf, out / "roc.png", f"{cfg.name}: ROC (validation)"):
            files.append("roc.png")
        if pr_png(perf, out / "precision_recall.png", f"{cfg.name}: precision-recall (validation)"):
            files.append("precision_recall.png")
        if gains_lift_png(perf, out / "gains_lift.png", f"{cfg.name}: gains and lift (validation)"):
            files.append("gains_lift.png")
    elif cfg.target.problem == "regression" and frame is None:
        notes.append("No residuals plot: no frame with the label was left in the cluster.")
    elif cfg.target.problem == "regression" and residuals_png(residual_points(model, frame, cfg.target.label), out / "residuals.png",
                       f"{cfg.name}: residuals ({frame_name})"):
        files.append("residuals.png")
    if varimp_png(model, out / "variable_importance.png", f"{cfg.name}: variable importance"):
        files.append("variable_importance.png")
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in metrics.items())
    balance = class_balance(frame, cfg.target.label) if frame is not None and cfg.target.problem != "regression" else {}
    # the images are inside the page: one object to open, from the S3 console or from a download
    images = "".join(f'<figure><img src="data:image/png;base64,{base64.b64encode((out / f).read_bytes()).decode()}" '
                     f'alt="{f}"><figcaption>{f}</figcaption></figure>' for f in files if f.endswith(".png"))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(cfg.name)} {html.escape(version)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td{{padding:2px 12px}}figure{{display:inline-block}}</style></head>
<body><h1>{html.escape(cfg.name)}</h1>
<p>Model <code>{html.escape(model.model_id)}</code> ({html.escape(model.algo)}), version {html.escape(version)}.
Label: <code>{html.escape(cfg.target.label)}</code>.</p>
<h2>Validation metrics</h2><table>{rows}</table>
{_review_html(review, metrics, balance, frame_name) if review is not None else ""}
{_confusion_html(matrix) if matrix is not None else ""}
<h2>Plots</h2>{images}{"".join(f"<p>{html.escape(n)}</p>" for n in notes)}
<p>Artifacts: <a href="model.zip">MOJO</a>, <a href="h2o-genmodel.jar">h2o-genmodel.jar</a>,
POJO source (when the algorithm has one), <a href="metadata.json">metadata.json</a>.</p></body></html>
"""
    (out / "index.html").write_text(page)
    return [*files, "index.html"]

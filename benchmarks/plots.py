"""The scale series' plots: seconds against rows, log-log, one line per way of doing the work."""

from __future__ import annotations

from pathlib import Path

STYLES = ("o-", "s--", "^:", "d-.", "v--", "x:")


def loglog(series: dict[str, dict[int, float]], title: str, path: Path, xlabel: str = "rows") -> Path:
    """``series`` maps a label to ``{rows: seconds}``; the plot is written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, points), style in zip(series.items(), STYLES, strict=False):
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("seconds (median)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

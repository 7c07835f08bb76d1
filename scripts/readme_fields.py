"""Rewrite the README's table of pipeline fields from the parser's declarations (``make schema``)."""

from __future__ import annotations

import sys
from pathlib import Path

from h2o_tasks import config

START, END = "<!-- fields:start -->\n", "<!-- fields:end -->"


def with_table(text: str) -> str:
    """``text`` (the README) with the generated table between its markers."""
    a, b = text.index(START) + len(START), text.index(END)
    return text[:a] + config.fields_table() + text[b:]


if __name__ == "__main__":
    readme = Path(__file__).resolve().parents[1] / "README.md"
    readme.write_text(with_table(readme.read_text()))
    sys.exit(0)

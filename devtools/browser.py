"""A headless Chromium for the browser tests of the Airflow UI, from Debian's ``chromium`` package.

Playwright drives it (``playwright`` from PyPI; its wheel bundles the driver), but its own browser
download (``playwright install``) is not used: the browser is the distribution's, launched by path
(``executable_path``). As root (CI) the package is installed with ``apt-get`` when missing, as
:func:`devtools.stack.postgres.ensure_bin_dir` does for PostgreSQL; anyone else is told the package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = "chromium"
CANDIDATES = (Path("/usr/bin/chromium"), Path("/usr/lib/chromium/chromium"))
INSTALL_HINT = f"sudo apt-get install --no-install-recommends {PACKAGE}"


def find_chromium() -> Path | None:
    """Debian's Chromium binary, if installed."""
    for path in CANDIDATES:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium")
    return Path(found) if found else None


def ensure_chromium() -> Path:
    """The Chromium binary; installed from Debian's packages when missing and running as root."""
    if (found := find_chromium()) is not None:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(f"Chromium not found (/usr/bin/chromium): the browser tests use Debian's package "
                           f"{PACKAGE!r}, not Playwright's download: {INSTALL_HINT}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        # the package lists may be missing or stale: refresh them only then
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    if (found := find_chromium()) is None:
        raise RuntimeError(f"apt-get installed {PACKAGE} but no binary appeared at /usr/bin/chromium")
    return found


def launch_args() -> list[str]:
    """Chromium's flags: its sandbox needs user namespaces a root process in a container rarely has."""
    args = ["--disable-dev-shm-usage", "--disable-gpu"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


@contextlib.contextmanager
def chromium(headless: bool = True) -> Iterator[Any]:
    """A Playwright ``Browser`` on Debian's Chromium (sync API), closed with its driver at the end."""
    from playwright.sync_api import sync_playwright

    path = ensure_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(path), headless=headless, args=launch_args())
        try:
            yield browser
        finally:
            browser.close()


def small_png(src: str | Path, dst: str | Path, limit: int = 200_000) -> Path:
    """``src`` (a screenshot) as a PNG of at most ``limit`` bytes at ``dst``: quantized to a palette
    (a UI has few colours), then scaled down until it fits."""
    from PIL import Image

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as img:
        image = img.convert("RGB")
    for scale in (1.0, 0.85, 0.7, 0.55, 0.4):
        size = (round(image.width * scale), round(image.height * scale))
        frame = image if scale == 1.0 else image.resize(size, Image.Resampling.LANCZOS)
        frame.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(dst, optimize=True)
        if dst.stat().st_size <= limit:
            return dst
    raise ValueError(f"{src}: no PNG under {limit} bytes even at {size[0]}x{size[1]}")

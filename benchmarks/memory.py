"""Peak resident memory of H2O JVMs, sampled from /proc while a benchmark runs."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path


def _h2o_jvms(name_prefix: str) -> dict[int, str]:
    """``{pid: cloud name}`` of running H2O JVMs whose ``-name`` starts with ``name_prefix``."""
    from h2o_tasks.cluster.local import command_lines

    found = {}
    for pid, argv in command_lines():
        if b"-name" in argv and any(a.endswith(b"h2o.jar") for a in argv):
            name = argv[argv.index(b"-name") + 1].decode(errors="replace") if argv.index(b"-name") + 1 < len(argv) else ""
            if name.startswith(name_prefix):
                found[int(pid)] = name
    return found


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    """The resident size of ``pid`` now, in KiB (its ``VmRSS``; 0 once it is gone)."""
    return _status_kib(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """The CPU time ``pid`` has used so far, user and system (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hwm_kib(pid: int) -> int:
    """The peak resident size of ``pid`` in KiB (its ``VmHWM``; 0 once it is gone)."""
    return _status_kib(pid, "VmHWM")


@dataclass
class PeakRss:
    """Per JVM: its cloud name and the highest peak resident set (VmHWM) seen, in MiB."""

    peaks: dict[int, tuple[str, float]] = field(default_factory=dict)

    def by_cloud(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, mib in self.peaks.values():
            out[name] = max(out.get(name, 0.0), mib)
        return out


class Sampler(threading.Thread):
    """Samples every ``period`` seconds until ``stop()``; read ``result`` afterwards."""

    def __init__(self, name_prefix: str, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.name_prefix, self.period = name_prefix, period
        self.result = PeakRss()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for pid, name in _h2o_jvms(self.name_prefix).items():
                mib = hwm_kib(pid) / 1024
                if mib > self.result.peaks.get(pid, ("", 0.0))[1]:
                    self.result.peaks[pid] = (name, round(mib, 1))
            self._halt.wait(self.period)

    def stop(self) -> PeakRss:
        self._halt.set()
        self.join(10)
        return self.result

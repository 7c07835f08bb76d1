"""Cluster sizing: propose memory from the input size and refuse clusters too small for it.

H2O's guidance is a cluster with about four times the memory of the (uncompressed) data.
Parquet is compressed, typically 3-5x against CSV, so its bytes count more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from h2o_tasks.config import ClusterConfig
from h2o_tasks.errors import ConfigError

DATA_FACTOR = 4.0
EXPANSION = {"csv": 1.0, "parquet": 4.0, "hive": 4.0}
OVERHEAD_MB = 200  # per JVM: H2O's own structures, the REST server, the parse buffers


@dataclass(frozen=True)
class SizingAdvice:
    input_bytes: int
    required_total_mb: int
    proposed_memory_mb: int
    available_total_mb: int

    @property
    def fits(self) -> bool:
        return self.available_total_mb >= self.required_total_mb


def advise(cluster: ClusterConfig, input_bytes: int, fmt: str) -> SizingAdvice:
    need = DATA_FACTOR * EXPANSION.get(fmt, 4.0) * input_bytes / 2**20
    per_node = max(1024, math.ceil((need / cluster.replicas + OVERHEAD_MB) / 256) * 256)
    usable = cluster.replicas * max(cluster.memory_mb - OVERHEAD_MB, 0)
    return SizingAdvice(input_bytes, math.ceil(need), per_node, usable)


def check(cluster: ClusterConfig, input_bytes: int, fmt: str) -> SizingAdvice:
    """Raise when ``replicas x memory`` cannot hold the input; returns the advice otherwise."""
    advice = advise(cluster, input_bytes, fmt)
    if not advice.fits:
        raise ConfigError(
            "cluster.memory", cluster.memory,
            f"{cluster.replicas} node(s) x {cluster.memory} leave {advice.available_total_mb} MB for data, but "
            f"{input_bytes / 2**20:.1f} MB of {fmt} input needs about {advice.required_total_mb} MB",
            f"set cluster.memory to at least {advice.proposed_memory_mb}m, add replicas, or shorten the window")
    return advice

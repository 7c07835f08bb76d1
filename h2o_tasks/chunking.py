"""The chunk size H2O parses an input with, for a parse set up from one file of many.

H2O reads an object in chunks of its parse setup's ``chunk_size``, one ranged GET each from S3.
Its setup sizes chunks for the bytes it was shown: set up from the first of 365 daily files
(0.28 MB), a year of flights at 16x is read in 47,830-byte chunks, 6.7 GETs a file where one
would do, and the nodes' parse takes twice as long (22 s against 11 s).
:func:`parse_chunk_size` is H2O's own rule applied to every file's bytes.
"""

from __future__ import annotations

from typing import Any

DEFAULT_CHUNK = 1 << 22  # FileVec.DFLT_CHUNK_SIZE
_MIN_CHUNK = 1 << 12
_MAX_CHUNK = (1 << 28) - 1  # a chunk must fit one Value
_CHUNKS_PER_NODE = 1 << 21


def parse_chunk_size(total_bytes: int, ncols: int, cores: int, nodes: int) -> int:
    """The chunk size of H2O's heuristic (``FileVec.calcOptimalChunkSize``, H2O 3.46, the new one)
    for a parse of ``total_bytes`` with ``ncols`` columns on ``nodes`` nodes of ``cores`` cores each.

    Its lower bound of ten times the longest line is left out: it is a text file's, and a parse
    set up from the first file already has it (the caller keeps the larger size).
    """
    local = total_bytes // max(nodes, 1)
    size = max(local // (4 * max(cores, 1)) + 1, _MIN_CHUNK)
    if size > 1 << 20:
        size = (size & ~0x1FF) + 512  # aligned to 512 B, as H2O does (its int mask widens to 64 bits)
    if total_bytes <= 1 << 16:
        return DEFAULT_CHUNK
    if size < DEFAULT_CHUNK and (local // size) * ncols < _CHUNKS_PER_NODE:
        return size
    count = cores * 4 * ncols
    if count > _CHUNKS_PER_NODE:  # bigger chunks, so a node holds at most about 2M chunk objects
        size *= 1 << max(2, (count // _CHUNKS_PER_NODE).bit_length() - 1)
    return min(_MAX_CHUNK, size)


def whole_input_chunk_size(h2o: Any, setup: dict[str, Any], total_bytes: int) -> int:
    """The chunk size for parsing ``total_bytes`` with ``setup`` (made from one file) on the connected cloud."""
    cluster = h2o.cluster()
    cores = min(int(node["num_cpus"]) for node in cluster.nodes)
    ours = parse_chunk_size(total_bytes, int(setup["number_columns"]), cores, int(cluster.cloud_size))
    return max(int(setup["chunk_size"]), ours)

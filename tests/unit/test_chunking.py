"""H2O's parse chunk-size rule, applied to a whole input (h2o_tasks.chunking); checked against H2O's own
setup in tests/integration/test_s3_source.py."""

from __future__ import annotations

import pytest

from h2o_tasks.chunking import DEFAULT_CHUNK, parse_chunk_size


def test_the_figure_h2o_gave_for_a_year_of_flights_at_16x():
    # H2O 3.46's setup over the 365 daily files (111,054,497 bytes, 19 columns) on 2 nodes of 2 cores
    assert parse_chunk_size(111_054_497, 19, 2, 2) == 6_941_184


@pytest.mark.parametrize("total", [1, 1 << 16])
def test_tiny_inputs_take_the_default_chunk(total):
    assert parse_chunk_size(total, 5, 2, 1) == DEFAULT_CHUNK


def test_small_inputs_make_four_chunks_a_core():
    size = parse_chunk_size(2_000_000, 5, 2, 1)
    assert size == 2_000_000 // 8 + 1
    assert parse_chunk_size(4_000_000, 5, 2, 1) > size  # grows with the input


def test_chunks_grow_with_the_input_and_stop_at_a_value_s_limit():
    sizes = [parse_chunk_size(n, 20, 4, 3) for n in (10**6, 10**8, 10**10, 10**13)]
    assert sizes == sorted(sizes) and sizes[-1] == (1 << 28) - 1


def test_many_columns_make_bigger_chunks():
    # 4 cores x 4 x 200,000 columns is past 2M chunk objects a node: chunks 2**max(2, log2(3.2M / 2M)) times bigger
    assert parse_chunk_size(10**9, 200_000, 4, 1) == 4 * parse_chunk_size(10**9, 5, 4, 1)


def test_sizes_past_32_bits_keep_their_high_bits():
    # Java's 0xFFFFFE00 is -512 as an int, so H2O's alignment keeps every bit above the low 9
    assert parse_chunk_size(16 * 2**30 + 64, 5, 1, 1) == (1 << 28) - 1
    assert parse_chunk_size(10**9, 5, 4, 1) == (10**9 // 16 + 1) // 512 * 512 + 512  # aligned to 512 B

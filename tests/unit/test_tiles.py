"""core.tiles: where tiles lie, how overlapping ones blend, and statistics pooled over them.

Properties over random grids (derandomized: the same examples every run) and a few pinned cases.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from comfyui_img2img.nodes.core.tiles import (
    Tile,
    blend_weights,
    crop,
    overlapping,
    partition,
    pooled_statistics,
    seam_score,
    window_starts,
)

# Derandomized and without an example database: CI runs the same examples every time.
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None)

sides = st.integers(1, 160)


def coverage(tiles: list[Tile], height: int, width: int, box: str) -> torch.Tensor:
    """How many tiles' ``box`` ("core" or "window") hold each unit of the grid."""
    count = torch.zeros(height, width, dtype=torch.int64)
    for tile in tiles:
        crop(count, getattr(tile, box)).add_(1)
    return count


def inside(box: tuple[int, int, int, int], height: int, width: int) -> bool:
    top, bottom, left, right = box
    return 0 <= top < bottom <= height and 0 <= left < right <= width


@st.composite
def overlapping_grids(draw):
    """A grid, a window size, an overlap under half of it, and a margin that leaves the blend room."""
    size = draw(st.integers(3, 96))
    overlap = draw(st.integers(1, (size - 1) // 2))
    margin = draw(st.integers(0, (overlap - 1) // 2))
    return draw(sides), draw(sides), size, overlap, margin


@PROPERTY
@given(height=sides, width=sides, core=st.integers(1, 64), margin=st.integers(0, 16))
def test_partition_cores_cover_the_grid_once_in_windows_with_the_stated_margin(height, width, core, margin):
    tiles = partition(height, width, core, margin)
    assert torch.equal(coverage(tiles, height, width, "core"), torch.ones(height, width, dtype=torch.int64))
    for tile in tiles:
        top, bottom, left, right = tile.core
        assert inside(tile.window, height, width) and inside(tile.core, height, width)
        assert bottom - top <= core and right - left <= core
        # ``margin`` units of context on every side, except where the grid ends first
        assert tile.window == (max(top - margin, 0), min(bottom + margin, height), max(left - margin, 0),
                               min(right + margin, width))  # fmt: skip
        rows, columns = tile.core_in_window
        assert rows.stop - rows.start == bottom - top and columns.stop - columns.start == right - left


@PROPERTY
@given(grid=overlapping_grids())
def test_overlapping_windows_are_equal_inside_the_grid_and_overlap_enough(grid):
    height, width, size, overlap, _ = grid
    tiles = overlapping(height, width, size, overlap)
    assert (coverage(tiles, height, width, "window") >= 1).all()
    assert {(t.window[1] - t.window[0], t.window[3] - t.window[2]) for t in tiles} == {
        (min(size, height), min(size, width))
    }
    for length in (height, width):
        starts = window_starts(length, size, overlap)
        assert starts[0] == 0 and starts[-1] == max(length - size, 0)
        for previous, start in itertools.pairwise(starts):
            assert size - overlap >= start - previous > 0  # at least ``overlap`` in common
    assert all(tile.core == tile.window and inside(tile.window, height, width) for tile in tiles)


@PROPERTY
@given(grid=overlapping_grids())
def test_blend_weights_sum_to_one_and_vanish_within_the_margin_of_shared_edges(grid):
    height, width, size, overlap, margin = grid
    tiles = overlapping(height, width, size, overlap)
    weights = blend_weights(tiles, height, width, margin)
    total = torch.zeros(height, width, dtype=torch.float64)
    for tile, weight in zip(tiles, weights, strict=True):
        top, bottom, left, right = tile.window
        assert weight.dtype == torch.float64 and weight.shape == (bottom - top, right - left)
        assert (weight >= 0).all() and (weight <= 1 + 1e-12).all()
        crop(total, tile.window).add_(weight)
        if margin:  # an edge is shared where the grid goes on beyond it
            for shared, edge in ((top > 0, weight[:margin]), (bottom < height, weight[-margin:]),
                                 (left > 0, weight[:, :margin]), (right < width, weight[:, -margin:])):  # fmt: skip
                assert not shared or bool((edge == 0).all())
    assert float((total - 1).abs().max()) <= 1e-12


@PROPERTY
@given(height=sides, width=sides, extra=st.integers(0, 64), margin=st.integers(0, 4))
def test_a_grid_within_one_window_is_one_tile_of_weight_one(height, width, extra, margin):
    size = max(height, width) + extra
    tiles = overlapping(height, width, size, (size - 1) // 2)
    assert tiles == [Tile((0, height, 0, width), (0, height, 0, width))]
    assert torch.equal(blend_weights(tiles, height, width, margin)[0], torch.ones(height, width, dtype=torch.float64))


def test_the_blend_is_a_raised_cosine_across_the_middle_of_the_overlap():
    """Two windows of 10 over 16 units overlap by 4 (units 6-9); a margin of 1 leaves units 7 and 8 to blend."""
    tiles = overlapping(1, 16, 10, 4)
    assert [tile.window for tile in tiles] == [(0, 1, 0, 10), (0, 1, 6, 16)]
    first, second = (weight[0] for weight in blend_weights(tiles, 1, 16, margin=1))
    assert first[:7].tolist() == [1.0] * 7 and first[9:].tolist() == [0.0]
    assert second[:1].tolist() == [0.0] and second[3:].tolist() == [1.0] * 7
    assert torch.allclose(second[1:3], torch.tensor([0.25, 0.75], dtype=torch.float64).mul(torch.pi / 2).sin() ** 2)
    assert torch.allclose(first[7:9] + second[1:3], torch.ones(2, dtype=torch.float64), atol=1e-15, rtol=0)


def test_bad_overlaps_and_margins_are_refused():
    with pytest.raises(ValueError, match="less than half"):
        overlapping(100, 100, 16, 8)
    with pytest.raises(ValueError, match="no room to blend"):
        blend_weights(overlapping(1, 16, 10, 4), 1, 16, margin=2)
    with pytest.raises(ValueError):
        partition(10, 10, 0, 1)


@settings(PROPERTY, max_examples=100)
@given(height=sides, width=sides, core=st.integers(4, 48), groups=st.sampled_from([1, 2, 4]), seed=st.integers(0, 99))
def test_pooled_statistics_of_the_cores_are_those_of_the_whole_tensor(height, width, core, groups, seed):
    values = torch.randn(2, 8, height, width, generator=torch.Generator().manual_seed(seed)) * 3 + 1
    parts = [crop(values, tile.core) for tile in partition(height, width, core, margin=2)]
    mean, variance = pooled_statistics(parts, groups)
    grouped = values.double().reshape(2, groups, -1)
    # Each core's moments in float32, as GroupNorm computes them; pooled in float64 without further loss.
    assert torch.allclose(mean, grouped.mean(-1), rtol=0, atol=1e-5)
    assert torch.allclose(variance, grouped.var(-1, unbiased=False), rtol=1e-5, atol=0)


def test_two_flat_tiles_of_different_means_pool_to_the_variance_between_them():
    """Each part has no variance of its own; together they vary by the difference of their means."""
    mean, variance = pooled_statistics([torch.full((1, 2, 4, 4), 3.0), torch.full((1, 2, 4, 2), 6.0)], groups=1)
    # 32 values of 3 and 16 of 6: mean 4, variance (32·1 + 16·4) / 48 = 2
    assert mean.tolist() == [[4.0]] and variance.tolist() == [[2.0]]


def test_seam_score_is_about_one_on_noise_and_large_at_a_step_on_a_boundary():
    noise = torch.randn(3, 96, 96, generator=torch.Generator().manual_seed(0))
    assert seam_score(noise, [32, 64], [24, 48, 72]) == pytest.approx(1.0, abs=0.1)
    smooth = 0.01 * torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))
    stepped = smooth.clone()
    stepped[..., 40:] += 1.0  # a step between columns 39 and 40
    assert seam_score(stepped, [], [40]) > 50
    assert seam_score(stepped, [32], [20]) < 1.0  # the step lies elsewhere: the boundaries change less
    assert seam_score(smooth, [], [40]) == pytest.approx(1.0, abs=0.3)

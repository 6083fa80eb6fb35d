"""Tiles of a latent or picture: where they lie, how overlapping ones blend, and statistics pooled over them.

Two layouts, both in whole units of the grid they are given (latent pixels, for the nodes):

- ``partition``: cores that partition the grid, each inside a window that adds ``margin`` units of context on
  every side that is not the grid's border. What is computed on a window is cropped back to its core, so each
  unit is computed once (the VAE's tiles).
- ``overlapping``: equal windows of ``size`` units spread evenly over the grid with at least ``overlap`` units in
  common, merged by ``blend_weights`` (the sampling model's tiles).

Pure torch: nothing here imports ComfyUI.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from dataclasses import dataclass

import torch

Box = tuple[int, int, int, int]  # top, bottom, left, right (bottom and right exclusive)


@dataclass(frozen=True)
class Tile:
    core: Box  # the units this tile's result is taken for
    window: Box  # the units it is computed on: the core and its context

    def scaled(self, numerator: int, denominator: int = 1) -> Tile:
        """The same tile on a grid ``numerator / denominator`` times as fine (a layer of another resolution)."""
        scale = lambda box: tuple(value * numerator // denominator for value in box)  # noqa: E731
        return Tile(scale(self.core), scale(self.window))

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """The core's rows and columns in a tensor of the window."""
        top, left = self.core[0] - self.window[0], self.core[2] - self.window[2]
        return slice(top, top + self.core[1] - self.core[0]), slice(left, left + self.core[3] - self.core[2])


def crop(tensor: torch.Tensor, box: Box) -> torch.Tensor:
    """``tensor[..., top:bottom, left:right]``."""
    return tensor[..., box[0] : box[1], box[2] : box[3]]


def even_spans(length: int, count: int) -> list[tuple[int, int]]:
    """``count`` consecutive spans that cover 0..length, their lengths differing by at most 1."""
    bounds = [round(index * length / count) for index in range(count + 1)]
    return list(itertools.pairwise(bounds))


def partition(height: int, width: int, core: int, margin: int) -> list[Tile]:
    """Cores of at most ``core`` units that partition a height × width grid, row by row, each in a window with
    ``margin`` units of context inside the grid."""
    if core < 1 or margin < 0:
        raise ValueError(f"a tile's core must be at least 1 unit and its margin at least 0, got {core} and {margin}")
    rows = even_spans(height, math.ceil(height / core))
    columns = even_spans(width, math.ceil(width / core))
    return [
        Tile(
            (top, bottom, left, right),
            (max(top - margin, 0), min(bottom + margin, height), max(left - margin, 0), min(right + margin, width)),
        )
        for top, bottom in rows
        for left, right in columns
    ]


def window_starts(length: int, size: int, overlap: int) -> list[int]:
    """Where windows of ``size`` units start along an axis of ``length``: the fewest with at least ``overlap``
    in common, spread evenly from 0 to the end. One window (of the whole length) where ``size`` covers it."""
    if length <= size:
        return [0]
    count = math.ceil((length - overlap) / (size - overlap))
    return [round(index * (length - size) / (count - 1)) for index in range(count)]


def overlapping(height: int, width: int, size: int, overlap: int) -> list[Tile]:
    """Windows of size × size units (or the whole grid along a side it covers), overlapping by at least
    ``overlap``; each tile's core is its window."""
    if not 0 <= 2 * overlap < size:
        raise ValueError(f"overlap ({overlap}) must be less than half of the tile size ({size})")
    rows = [(top, min(top + size, height)) for top in window_starts(height, size, overlap)]
    columns = [(left, min(left + size, width)) for left in window_starts(width, size, overlap)]
    return [Tile(box, box) for box in ((t, b, left, r) for t, b in rows for left, r in columns)]


def _axis_weights(spans: list[tuple[int, int]], length: int, margin: int) -> list[torch.Tensor]:
    """Each span's weight along one axis: 0 within ``margin`` of an edge it shares with a neighbour, then a
    raised-cosine ramp up to 1 across what is left of that overlap, 1 elsewhere; 1 up to the grid's border."""
    weights = []
    for index, (start, stop) in enumerate(spans):
        weight = torch.zeros(length, dtype=torch.float64)
        weight[start:stop] = 1.0
        position = torch.arange(length, dtype=torch.float64)
        if index > 0:  # the overlap with the previous span: [start, previous stop)
            weight *= _ramp(position, start + margin, spans[index - 1][1] - margin)
        if index < len(spans) - 1:  # with the next: [next start, stop)
            weight *= 1.0 - _ramp(position, spans[index + 1][0] + margin, stop - margin)
        weights.append(weight)
    return weights


def _ramp(position: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """0 before ``start``, sin² rising to 1 over [start, stop) at unit centres, 1 from ``stop`` on."""
    if stop <= start:
        raise ValueError(f"the overlap leaves no room to blend after a margin on both sides ({start} to {stop})")
    t = ((position - start + 0.5) / (stop - start)).clamp(0.0, 1.0)
    return torch.sin(t * (math.pi / 2)) ** 2


def blend_weights(tiles: list[Tile], height: int, width: int, margin: int = 0) -> list[torch.Tensor]:
    """Each overlapping tile's weight over its window (float64), the weights of all tiles summing to 1 at every
    unit of the grid: the product of its rows' and columns' raised-cosine ramps (``_axis_weights``), divided by
    the sum over all tiles, which is already 1 where neighbours overlap by the same amount on both sides."""
    rows = sorted({tile.window[:2] for tile in tiles})
    columns = sorted({tile.window[2:] for tile in tiles})
    row_weights = dict(zip(rows, _axis_weights(rows, height, margin), strict=True))
    column_weights = dict(zip(columns, _axis_weights(columns, width, margin), strict=True))
    # The tiles are every row span with every column span, so their products sum to the product of the sums.
    total = torch.outer(sum(row_weights.values()), sum(column_weights.values()))
    if bool((total <= 0).any()):
        raise ValueError("some units lie in no tile's blending region: the margin is too large for the overlap")
    weights = []
    for tile in tiles:
        top, bottom, left, right = tile.window
        product = torch.outer(row_weights[(top, bottom)][top:bottom], column_weights[(left, right)][left:right])
        weights.append(product / crop(total, tile.window))
    return weights


@dataclass(frozen=True)
class GroupMoments:
    """Per-sample, per-group count, mean and sum of squared deviations of a tensor's values, kept in float64 so
    that the moments of many parts pool without loss (Chan et al.'s parallel variance)."""

    count: int
    mean: torch.Tensor  # [batch, groups]
    squares: torch.Tensor  # [batch, groups]: the sum of squared deviations from the mean

    @classmethod
    def of(cls, values: torch.Tensor, groups: int) -> GroupMoments:
        """The moments of ``values`` [batch, channels, ...] over each group of channels and every position,
        computed in the values' dtype as GroupNorm computes them, then held in float64."""
        grouped = values.reshape(values.shape[0], groups, -1)
        variance, mean = torch.var_mean(grouped, dim=-1, correction=0)
        count = grouped.shape[-1]
        return cls(count, mean.double(), variance.double() * count)

    def __add__(self, other: GroupMoments) -> GroupMoments:
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        squares = self.squares + other.squares + delta.square() * (self.count * other.count / count)
        return GroupMoments(count, mean, squares)

    def mean_and_variance(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled mean and (biased, as GroupNorm's) variance."""
        return self.mean, self.squares / self.count


def pooled_statistics(parts: list[torch.Tensor], groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and variance per sample and group of the values of all ``parts`` together (tiles' cores), as
    GroupNorm computes them over the whole tensor, pooled in float64."""
    return functools.reduce(operator.add, (GroupMoments.of(part, groups) for part in parts)).mean_and_variance()


def seam_score(image: torch.Tensor, boundaries_y: list[int], boundaries_x: list[int], grid: int = 1) -> float:
    """How much more the picture changes across the tiles' boundaries than across other lines: the mean absolute
    step between neighbouring pixels across each boundary, over the mean across every other line of the ``grid``
    (1: every line; 8 for pictures an SD VAE decoded, which leaves its latent grid in every picture, tiled or
    not). 1: no seam. ``image`` [..., height, width]; boundary b lies between rows (columns) b - 1 and b."""
    steps_y = (image[..., 1:, :] - image[..., :-1, :]).abs()  # step i: between rows i and i + 1
    steps_x = (image[..., :, 1:] - image[..., :, :-1]).abs()

    def lines(count: int, boundaries: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        at = torch.zeros(count, dtype=torch.bool)
        at[[b - 1 for b in boundaries]] = True
        other = torch.zeros(count, dtype=torch.bool)
        other[grid - 1 :: grid] = True
        return at, other & ~at

    at_y, other_y = lines(steps_y.shape[-2], boundaries_y)
    at_x, other_x = lines(steps_x.shape[-1], boundaries_x)
    at_seams = torch.cat([steps_y[..., at_y, :].flatten(), steps_x[..., :, at_x].flatten()])
    elsewhere = torch.cat([steps_y[..., other_y, :].flatten(), steps_x[..., :, other_x].flatten()])
    return float(at_seams.double().mean() / elsewhere.double().mean())

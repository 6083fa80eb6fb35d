"""The VAE in tiles, each tile coded once: Img2ImgVAEEncode's and Img2ImgVAEDecode's tiling.

Tile cores partition the latent grid; each tile runs ComfyUI's own VAE network on a window (its core and a margin
of context) and its result is cropped back to its core. The tiles run in threads that take turns (``Lockstep``):
one runs until it reaches a sync point inside the network, hands in its part and waits; when the last tile has
handed in, the parts are combined and the first tile goes on. The sync points are the network's own modules,
their forwards wrapped on the instances for the length of one call:

- attention blocks (which SD's VAEs have at the latent resolution only) run on the whole tensor, the cores put
  together: what must see the whole picture sees it; each tile goes on with its window of the result;
- ``exact`` runs also sync every GroupNorm, with the statistics of all tiles' cores pooled in float64 (the whole
  picture's), and the input of every convolution wider than 1×1: each tile's margin is refreshed, in place, from
  its neighbours' cores, so that one latent pixel of margin covers a network of any depth. The result equals
  the whole-picture pass; memory holds the tiles' windows of the tensors the network keeps (about two
  activations of the whole picture at the largest layer) instead of the whole pass's;
- ``streamed`` runs take the tiles one after another through the network with a margin of the caller's (equal
  to the whole pass where it covers the network's reach, which ``probe`` measures), so memory holds one tile's
  activations; GroupNorm then uses statistics measured on a whole pass over a collage of the picture's blocks
  (``probe_input``). Networks without normalisation (TAESD) so equal the whole pass; SD's KL VAE comes close.
"""

from __future__ import annotations

import functools
import math
import operator
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import comfy.ldm.modules.diffusionmodules.model as vae_blocks
import torch

from .core.tiles import GroupMoments, Tile, crop, partition, pooled_statistics


class TileFailed(Exception):
    """Raised in the tiles still waiting when another tile's run failed; the caller gets that tile's error."""


class Lockstep:
    """Runs ``work(index)`` for each tile in threads that take turns between ``sync`` calls: one thread runs at
    a time, woken by its own event, so that the tiles' work is as serial as one pass over the whole."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.turns = [threading.Event() for _ in range(count)]
        self.parts: list = []
        self.answers: list = []
        self.failure: BaseException | None = None
        self.local = threading.local()

    @property
    def index(self) -> int | None:
        """The tile whose thread this is; None outside the tiles' threads."""
        return getattr(self.local, "index", None)

    def run(self, work: Callable[[int], object]) -> list:
        results: list = [None] * self.count
        inference = torch.is_inference_mode_enabled()

        def tile(index: int) -> None:
            self.local.index = index
            try:
                with torch.inference_mode(inference):
                    self._wait_for_turn(index)
                    results[index] = work(index)
                self._hand_on(index)
            except BaseException as error:
                if self.failure is None or isinstance(self.failure, TileFailed):
                    self.failure = error
                for turn in self.turns:
                    turn.set()

        threads = [threading.Thread(target=tile, args=(index,), daemon=True) for index in range(self.count)]
        self.turns[0].set()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.failure is not None:
            raise self.failure
        return results

    def sync(self, part: object, combine: Callable[[list], list]) -> object:
        """Hand in this tile's part; once every tile has, ``combine`` (run in the last tile's thread) turns the
        parts into one answer per tile, and this tile gets its own when its turn comes again."""
        index = self.index
        self.parts.append(part)
        if index == self.count - 1:
            parts, self.parts = self.parts, []
            self.answers = combine(parts)
        self._hand_on(index)
        self._wait_for_turn(index)
        return self.answers[index]

    def _hand_on(self, index: int) -> None:
        """The next tile's turn: to hand in its part at this sync point, or to go on from the last one."""
        self.turns[index].clear()
        self.turns[(index + 1) % self.count].set()

    def _wait_for_turn(self, index: int) -> None:
        self.turns[index].wait()
        if self.failure is not None:
            raise TileFailed()


Strip = tuple[int, tuple[slice, slice], tuple[slice, slice]]  # (other tile, where in its window, where in mine)


@dataclass
class TiledRun:
    """One call of a VAE network over tiles of a latent grid of ``height`` × ``width``."""

    tiles: list[Tile]
    height: int
    width: int
    exact: bool
    statistics: dict = field(default_factory=dict)  # streamed: (module, occurrence) -> (mean, variance)
    lockstep: Lockstep = field(init=False)
    local: threading.local = field(default_factory=threading.local)
    _strips: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lockstep = Lockstep(len(self.tiles))

    @property
    def in_tile(self) -> bool:
        """Whether the calling thread runs a tile (not a combine over the whole tensor, nor another thread)."""
        return self.lockstep.index is not None and not getattr(self.local, "whole", False)

    def scale_of(self, x: torch.Tensor) -> int:
        """How many of ``x``'s pixels a latent pixel spans: ``x`` is a window of this thread's tile."""
        window = self.tiles[self.lockstep.index].window
        scale, rest = divmod(x.shape[-2], window[1] - window[0])
        if rest or scale < 1:
            raise ValueError(f"a layer of {x.shape[-2]} rows is not a whole multiple of its tile's latent rows")
        return scale

    def strips(self, scale: int) -> list[list[Strip]]:
        """What each tile's core gives the other tiles' margins at ``scale``: for tile j, (i, where in i's
        window, where in j's window) of every part of i's window that lies in j's core."""
        if scale not in self._strips:
            tiles = [tile.scaled(scale) for tile in self.tiles]
            self._strips[scale] = [
                [strip for i, other in enumerate(tiles) if i != j and (strip := _overlap(i, other, tile))]
                for j, tile in enumerate(tiles)
            ]
        return self._strips[scale]

    def refreshed(self, x: torch.Tensor, groups: int = 0) -> tuple[torch.Tensor, tuple | None]:
        """``x``'s margin overwritten, in place, with the neighbours' cores (as the whole pass has it there); with
        ``groups``, also the mean and variance of every tile's core together, per sample and group (float64)."""
        scale, index = self.scale_of(x), self.lockstep.index
        rows, columns = self.tiles[index].scaled(scale).core_in_window
        sent = [(i, theirs, x[(..., *mine)].clone()) for i, theirs, mine in self.strips(scale)[index]]
        moments = GroupMoments.of(x[..., rows, columns], groups) if groups else None

        def combine(parts: list) -> list:
            received = [[] for _ in self.tiles]
            for strips, _ in parts:
                for i, where, values in strips:
                    received[i].append((where, values))
            statistics = None
            if groups:
                statistics = functools.reduce(operator.add, [moments for _, moments in parts]).mean_and_variance()
            return [(each, statistics) for each in received]

        received, statistics = self.lockstep.sync((sent, moments), combine)
        for where, values in received:
            x[(..., *where)] = values
        return x, statistics

    def whole(self, x: torch.Tensor, function: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """This tile's window of ``function`` of the whole layer, the tiles' cores of ``x`` put together. Modules
        called inside ``function`` run as they are."""
        scale, index = self.scale_of(x), self.lockstep.index
        rows, columns = self.tiles[index].scaled(scale).core_in_window

        def combine(parts: list[torch.Tensor]) -> list[torch.Tensor]:
            self.local.whole = True
            try:
                result = function(self.cores_together(parts, scale))
            finally:
                self.local.whole = False
            return [crop(result, tile.scaled(scale).window).clone() for tile in self.tiles]

        return self.lockstep.sync(x[..., rows, columns], combine)

    def cores_together(self, parts: list[torch.Tensor], scale: int) -> torch.Tensor:
        """The tiles' cores at ``scale`` put together into the layer's whole tensor."""
        whole = parts[0].new_empty(*parts[0].shape[:-2], self.height * scale, self.width * scale)
        for tile, part in zip(self.tiles, parts, strict=True):
            top, bottom, left, right = tile.scaled(scale).core
            whole[..., top:bottom, left:right] = part
        return whole

    def occurrence(self, module: torch.nn.Module) -> int:
        """How many times this thread has called ``module`` before (streamed runs' statistics are per call)."""
        counts = self.local.__dict__.setdefault("counts", {})
        counts[module] = counts.get(module, -1) + 1
        return counts[module]


def _overlap(i: int, other: Tile, tile: Tile) -> Strip | None:
    """Where ``other``'s window (tile i) meets ``tile``'s core, in each one's window, or None."""
    top, left = max(other.window[0], tile.core[0]), max(other.window[2], tile.core[2])
    bottom, right = min(other.window[1], tile.core[1]), min(other.window[3], tile.core[3])
    if top >= bottom or left >= right:
        return None
    where = lambda window: (slice(top - window[0], bottom - window[0]), slice(left - window[2], right - window[2]))  # noqa: E731
    return i, where(other.window), where(tile.window)


def normalized(norm: torch.nn.GroupNorm, x: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """GroupNorm of ``x`` with given statistics ([batch, groups], float64) and the module's affine weights, as one
    multiply-add per value: x · a + b with a = w / σ and b = bias − μ · w / σ per sample and channel."""
    batch, channels = x.shape[:2]
    per_group = channels // norm.num_groups
    scale = torch.rsqrt(variance + norm.eps).repeat_interleave(per_group, dim=1)  # [batch, channels]
    shift = -mean.repeat_interleave(per_group, dim=1) * scale
    if norm.affine:
        scale, shift = scale * norm.weight.double(), shift * norm.weight.double() + norm.bias.double()
    shape = (batch, channels) + (1,) * (x.ndim - 2)
    return torch.addcmul(shift.to(x.dtype).reshape(shape), x, scale.to(x.dtype).reshape(shape))


def group_norm_forward(run: TiledRun, norm: torch.nn.GroupNorm, original: Callable) -> Callable:
    """A GroupNorm's forward: with the statistics of all tiles' cores (exact runs) or those measured on the
    picture scaled down (streamed runs)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not run.in_tile:
            return original(x)
        if not run.exact:
            return normalized(norm, x, *run.statistics[(norm, run.occurrence(norm))])
        x, (mean, variance) = run.refreshed(x, norm.num_groups)
        return normalized(norm, x, mean, variance)

    return forward


def whole_forward(run: TiledRun, original: Callable) -> Callable:
    """An attention block's forward: on the whole tensor, each tile going on with its window of the result."""

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not run.in_tile:
            return original(x, *args, **kwargs)
        return run.whole(x, lambda whole: original(whole, *args, **kwargs))

    return forward


def refreshing_forward(run: TiledRun, original: Callable) -> Callable:
    """A convolution's or downsampling's forward on its input refreshed from the neighbours (exact runs)."""

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if run.in_tile and run.exact:
            x = run.refreshed(x)[0]
        return original(x, *args, **kwargs)

    return forward


def sync_points(network: torch.nn.Module, run: TiledRun) -> dict[torch.nn.Module, Callable]:
    """The wrapped forwards of ``network``'s modules that are sync points of a tiled run."""
    in_downsampling = {
        id(m) for block in network.modules() if isinstance(block, vae_blocks.Downsample) for m in block.modules()
    }
    wrapped = {}
    for module in network.modules():
        if isinstance(module, vae_blocks.AttnBlock):
            wrapped[module] = whole_forward(run, module.forward)
        elif isinstance(module, torch.nn.GroupNorm):
            wrapped[module] = group_norm_forward(run, module, module.forward)
        elif isinstance(module, vae_blocks.Downsample) or (
            isinstance(module, torch.nn.Conv2d) and max(module.kernel_size) > 1 and id(module) not in in_downsampling
        ):
            wrapped[module] = refreshing_forward(run, module.forward)
    return wrapped


@contextmanager
def forwards_wrapped(wrapped: dict[torch.nn.Module, Callable]) -> Iterator[None]:
    """The modules' forwards replaced for the block, on the instances (the classes are left alone); a forward
    another part set on an instance (accelerate's packed layers) is wrapped too and put back after."""
    before = {module: vars(module).get("forward") for module in wrapped}
    for module, forward in wrapped.items():
        module.forward = forward
    try:
        yield
    finally:
        for module, forward in before.items():
            if forward is None:
                vars(module).pop("forward", None)
            else:
                module.forward = forward


# A probe pass codes at most this many latent pixels whole (a 1024² picture for SD), in blocks of PROBE_BLOCK².
PROBE_LATENT_PIXELS = 128 * 128
PROBE_BLOCK = 32


@dataclass(frozen=True)
class Probe:
    """What one whole pass over a small version of the input tells about a network."""

    statistics: dict  # (GroupNorm, occurrence) -> (mean, variance), [batch, groups] in float64
    reach: float  # latent pixels: the most any convolutions in a row reach between two attention blocks


def probe(network: torch.nn.Module, call: Callable, small: torch.Tensor, latent_rows: int) -> Probe:
    """Runs ``call(small)`` once, whole, recording every GroupNorm's input statistics per call and the reach of
    the convolutions (half a kernel each, in latent pixels of the layer they run at) between attention blocks."""
    statistics, counts, segments = {}, {}, [0.0]

    def record(norm: torch.nn.GroupNorm, original: Callable) -> Callable:
        def forward(x: torch.Tensor) -> torch.Tensor:
            counts[norm] = counts.get(norm, -1) + 1
            statistics[(norm, counts[norm])] = pooled_statistics([x], norm.num_groups)
            return original(x)

        return forward

    def reach(conv: torch.nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        pixels_per_latent = output.shape[-2] * conv.stride[0] / latent_rows  # downsampling pads its input
        segments[-1] += (conv.kernel_size[0] // 2) * conv.dilation[0] / pixels_per_latent

    def new_segment(block: torch.nn.Module, inputs: tuple) -> None:
        segments.append(0.0)

    norms = {m: record(m, m.forward) for m in network.modules() if isinstance(m, torch.nn.GroupNorm)}
    hooks = [m.register_forward_hook(reach) for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    blocks = [m for m in network.modules() if isinstance(m, vae_blocks.AttnBlock)]
    hooks += [block.register_forward_pre_hook(new_segment) for block in blocks]
    try:
        with forwards_wrapped(norms):
            call(small)
    finally:
        for hook in hooks:
            hook.remove()
    return Probe(statistics, max(segments))


def probe_input(x: torch.Tensor, scale: int) -> torch.Tensor:
    """What a streamed run's probe pass codes whole: ``x`` itself where its latent grid has at most
    PROBE_LATENT_PIXELS, else a collage of its blocks of PROBE_BLOCK latent pixels taken on a regular sparse
    grid, so that the probe sees the picture's content at its own resolution (statistics of the picture scaled
    down differ: SD's KL VAE then decodes at 17 dB)."""
    height, width = x.shape[-2] // scale, x.shape[-1] // scale
    if height * width <= PROBE_LATENT_PIXELS:
        return x
    blocks = partition(height, width, PROBE_BLOCK, 0)
    rows, columns = sorted({b.core[:2] for b in blocks}), sorted({b.core[2:] for b in blocks})
    stride = math.ceil(math.sqrt(len(blocks) * PROBE_BLOCK**2 / PROBE_LATENT_PIXELS))
    picked_rows, picked_columns = (spans[min(stride // 2, len(spans) - 1) :: stride] for spans in (rows, columns))
    block = lambda top, bottom, left, right: x[..., top * scale : bottom * scale, left * scale : right * scale]  # noqa: E731
    rows = [torch.cat([block(*row, *column) for column in picked_columns], dim=-1) for row in picked_rows]
    return torch.cat(rows, dim=-2)


def tiled_call(
    network: torch.nn.Module, call: Callable, x: torch.Tensor, scales: tuple[int, int], core: int, margin: int,
    exact: bool,
) -> torch.Tensor:  # fmt: skip
    """``call(x)`` computed over tiles with cores of ``core`` latent pixels and ``margin`` pixels of context:
    ``scales`` are the input's and output's pixels per latent pixel (8 and 1 to encode, 1 and 8 to decode)."""
    scale_in, scale_out = scales
    height, width = x.shape[-2] // scale_in, x.shape[-1] // scale_in
    tiles = partition(height, width, core, 1 if exact else margin)
    if len(tiles) == 1:
        return call(x)
    statistics = {}
    if not exact and any(isinstance(module, torch.nn.GroupNorm) for module in network.modules()):
        small = probe_input(x, scale_in)
        statistics = probe(network, call, small, small.shape[-2] // scale_in).statistics
    run = TiledRun(tiles, height, width, exact, statistics)

    def work(index: int) -> torch.Tensor:
        tile = tiles[index]
        rows, columns = tile.scaled(scale_out).core_in_window
        return call(crop(x, tile.scaled(scale_in).window).clone())[..., rows, columns]

    with forwards_wrapped(sync_points(network, run)):
        cores = run.lockstep.run(work)
    return run.cores_together(cores, scale_out)


# Exact runs hold about three activations of the whole picture at its largest layer, against ComfyUI's estimate
# of the whole pass (measured: the largest tile-free pass its estimate covers).
EXACT_MEMORY_SHARE = 0.75


def supports_one_pass(vae) -> bool:
    """Whether the VAE is an image VAE of 2-D layers, which the one-pass tiler runs (video and audio VAEs are not)."""
    model = vae.first_stage_model
    flat = all(not isinstance(m, (torch.nn.Conv3d, torch.nn.Conv1d)) for m in model.modules())
    return getattr(vae, "latent_dim", 2) == 2 and flat and hasattr(model, "encode") and hasattr(model, "decode")


@contextmanager
def coded_in_tiles(vae, tile_size: int, margin: int, memory_needed: float, free_memory: float) -> Iterator[bool]:
    """Within the block, ComfyUI's own ``vae.encode`` and ``vae.decode`` code in tiles of ``tile_size`` pixels:
    their network's encode and decode are swapped for tiled calls. Exact where that fits in ``free_memory``
    (ComfyUI's estimate for the whole pass is ``memory_needed``), else streamed with ``margin`` pixels of
    context; yields whether the run is exact."""
    model = vae.first_stage_model
    exact = EXACT_MEMORY_SHARE * memory_needed < free_memory
    down, up = vae.spacial_compression_encode(), vae.spacial_compression_decode()
    encode, decode = model.encode, model.decode

    def tiled_encode(pixels: torch.Tensor) -> torch.Tensor:
        return tiled_call(model, encode, pixels, (down, 1), max(tile_size // down, 1), -(-margin // down), exact)

    def tiled_decode(latent: torch.Tensor, **options) -> torch.Tensor:
        call = lambda z: decode(z, **options)  # noqa: E731
        return tiled_call(model, call, latent, (1, up), max(tile_size // up, 1), -(-margin // up), exact)

    model.encode, model.decode = tiled_encode, tiled_decode
    try:
        yield exact
    finally:
        del model.encode, model.decode

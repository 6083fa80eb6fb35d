"""Crop and stitch: each region of a mask cut out with context, scaled to the model's size, and put back.

The crop: the mask is grown by ``grow`` px (max-pool dilation), its holes filled (background not connected to
the border), and split into regions, its 8-connected parts; parts closer than twice the blend width are one
region, so that no pixel is in two regions' blends. Each region's box is its bounding box, each side grown to
side × ``context_factor`` plus ``context_pixels`` at each end (at least ``blend`` px at each end, so the blend
lies in the crop) and one pixel for rounding, then widened to the target's aspect ratio, centred on the region
and shifted inside the picture. A box longer than
the picture along a side takes the whole side, and the crop is padded there by repeating the edge pixels. The
box's pixels are resampled to the target size (``fit.resize``); the region's mask the same way, bilinear.

The stitch adds the change, not the crop: ``out = input + w · resize_to_box(edited − original_crop)``, with
``w`` 1 on the region's mask and falling linearly to 0 at ``blend`` px outside it (Chebyshev distance, as the
kept-pixels feather counts it). With no edit the difference is 0 and the output is the input exactly; where
``w`` is 0 the input's values are taken as they are (torch.where), bit for bit.

Frames: where every frame of a batch has the same number of regions, region k keeps one box size over the
frames (the largest it needs) and its centre is a centred moving average over 5 frames of its mask's bounding
box centre (the first and last frame repeated at the ends), so a box moves at most 2 px between frames where
the mask moves at most 2 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .fit import RESAMPLE_METHODS, resize
from .kept_pixels import lab_to_rgb, rgb_to_lab

REGION_MODES = ("separate", "together")
SMOOTHING_FRAMES = 5


@dataclass(frozen=True)
class CropOptions:
    """How the crop node cuts: the target size (multiples of 8), the context, the blend, the mask's clean-up."""

    target_width: int = 512
    target_height: int = 512
    context_factor: float = 1.2
    context_pixels: int = 16
    blend: int = 16
    grow: int = 0
    fill_holes: bool = True
    regions: str = "separate"
    method: str = "lanczos"

    def __post_init__(self) -> None:
        for name in ("target_width", "target_height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 8 or value % 8:
                raise ValueError(f"{name} must be a multiple of 8 (at least 8), got {value!r}")
        for name in ("context_pixels", "blend", "grow"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number ≥ 0, got {value!r}")
        if not self.context_factor >= 1.0:
            raise ValueError(
                f"context_factor must be at least 1 (1: the mask's bounding box), got {self.context_factor!r}"
            )
        if self.regions not in REGION_MODES:
            raise ValueError(f"regions must be one of {', '.join(REGION_MODES)}, got {self.regions!r}")
        if self.method not in RESAMPLE_METHODS:
            raise ValueError(f"method must be one of {', '.join(RESAMPLE_METHODS)}, got {self.method!r}")


@dataclass(frozen=True)
class CropBox:
    """One crop's place: a box of the frame's pixels, and the edge pixels repeated around it (left, right, top,
    bottom) to reach the target's aspect ratio. ``empty``: a frame without a region (a stand-in crop)."""

    frame: int
    left: int
    top: int
    width: int
    height: int
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    empty: bool = False

    @property
    def canvas(self) -> tuple[int, int]:
        """(height, width) of the box with its padding: what the crop is resampled from and back to."""
        return self.height + self.pad[2] + self.pad[3], self.width + self.pad[0] + self.pad[1]


@dataclass(frozen=True, eq=False)
class StitchRecord:
    """What the stitch needs, from the crop: the input, each crop's box and pixels as cut, its blend weight
    over its box, and its colour-correction weights at crop resolution."""

    image: torch.Tensor
    boxes: tuple[CropBox, ...]
    crops: torch.Tensor
    weights: tuple[torch.Tensor, ...]
    context: torch.Tensor
    method: str
    notes: tuple[str, ...] = ()


# ---- connected regions: run-length labeling with union-find ----


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, starts and (exclusive) ends of the horizontal runs of True in a 2-D mask, in reading order."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1)
    rows, starts = np.nonzero(steps == 1)
    _, ends = np.nonzero(steps == -1)
    return rows, starts, ends


def _run_links(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int, reach: int) -> np.ndarray:
    """Pairs (a, b) of runs in consecutive rows that touch: overlapping columns, or diagonally (reach 1)."""
    stride = width + 2  # a row's keys lie below the next row's
    key_starts, key_ends = rows * stride + starts, rows * stride + ends
    # Run b of the next row touches run a where b.start <= a.end - 1 + reach and b.end >= a.start + 1 - reach.
    low = np.searchsorted(key_ends, (rows + 1) * stride + starts + 1 - reach, side="left")
    high = np.searchsorted(key_starts, (rows + 1) * stride + ends - 1 + reach, side="right")
    counts = np.maximum(high - low, 0)
    first = np.repeat(np.arange(rows.size), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.stack([first, np.repeat(low, counts) + offsets], axis=1)


def _component_roots(count: int, links: np.ndarray) -> np.ndarray:
    """For each run, the first run (in reading order) of its connected component."""
    parent = list(range(count))

    def root(run: int) -> int:
        while parent[run] != run:
            parent[run] = parent[parent[run]]  # path halving keeps the trees flat
            run = parent[run]
        return run

    for a, b in links.tolist():
        first, second = root(a), root(b)
        if first != second:
            parent[max(first, second)] = min(first, second)
    return np.array([root(run) for run in range(count)], dtype=np.int64)


def label_regions(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Connected parts of a 2-D boolean mask (8- or 4-connectivity) as labels 1..n in the reading order of their
    first pixel (top to bottom, then left to right); 0 where the mask is False."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    rows, starts, ends = _runs(np.asarray(mask, dtype=bool))
    labels = np.zeros(mask.shape, dtype=np.int32)
    if rows.size == 0:
        return labels, 0
    roots = _component_roots(rows.size, _run_links(rows, starts, ends, mask.shape[1], int(connectivity == 8)))
    firsts, run_labels = np.unique(roots, return_inverse=True)
    lengths = ends - starts
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    labels.flat[np.repeat(rows * mask.shape[1] + starts, lengths) + offsets] = np.repeat(run_labels + 1, lengths)
    return labels, int(firsts.size)


def filled_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled: background parts (4-connected, the dual of 8-connected regions) that do
    not touch the picture's border."""
    background, _ = label_regions(~mask, connectivity=4)
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    return mask | ((background > 0) & ~np.isin(background, border))


def grown(values: torch.Tensor, pixels: int) -> torch.Tensor:
    """A [height, width] mask dilated by ``pixels`` (a square of side 2·pixels + 1, the max of the values under
    it), in two 1-D passes: the square's max is separable."""
    if pixels <= 0:
        return values
    batch = values[None, None].float()
    batch = F.max_pool2d(batch, (1, 2 * pixels + 1), stride=1, padding=(0, pixels))
    return F.max_pool2d(batch, (2 * pixels + 1, 1), stride=1, padding=(pixels, 0))[0, 0]


def blend_weight(support: torch.Tensor, blend: int) -> torch.Tensor:
    """``w`` of the stitch over a box: 1 on the region's mask, 1 - d / blend at Chebyshev distance d outside it,
    0 from d = blend on."""
    weight = support.float()
    reached = weight[None, None]
    for distance in range(1, blend):
        reached = F.max_pool2d(reached, 3, stride=1, padding=1)
        weight = torch.where((reached[0, 0] > 0) & (weight == 0), 1.0 - distance / blend, weight)
    return weight


# ---- regions of a frame ----


# Regions' bounding boxes: (top, left, bottom, right), exclusive ends.
Bounds = tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True, eq=False)
class FrameRegions:
    """A frame's mask after growing and filling (``values``), its regions as labels 1..n, and their bounding
    boxes (top, left, bottom, right), exclusive ends."""

    values: torch.Tensor
    labels: np.ndarray
    bounds: Bounds


def frame_regions(mask: torch.Tensor, options: CropOptions) -> FrameRegions:
    """The regions of one [height, width] mask: its non-zero pixels, grown and filled, then split into parts
    (``separate``, parts closer than 2 × blend px kept together) or taken as one (``together``)."""
    values = grown(mask.detach().float().cpu(), options.grow)
    support = values.numpy() > 0
    if options.fill_holes and support.any():
        filled = filled_holes(support)
        values = torch.where(torch.from_numpy(filled & ~support), 1.0, values)
        support = filled
    if options.regions == "together":
        groups = support.astype(np.int32)
    else:
        near = grown(torch.from_numpy(support).float(), max(options.blend - 1, 0)).numpy() > 0
        groups = np.where(support, label_regions(near)[0], 0)
    # Reading order of each region's own first pixel (the grouping's first pixel may lie outside the region).
    found, first = np.unique(groups.ravel(), return_index=True)
    order = found[np.argsort(first)]
    order = order[order > 0]
    relabel = np.zeros(int(groups.max()) + 1, dtype=np.int32)
    relabel[order] = np.arange(1, order.size + 1, dtype=np.int32)
    labels = relabel[groups]
    return FrameRegions(values, labels, _bounds(labels, order.size))


def _bounds(labels: np.ndarray, count: int) -> Bounds:
    rows, columns = np.nonzero(labels)
    owners = labels[rows, columns]
    top, left = np.full(count + 1, labels.shape[0]), np.full(count + 1, labels.shape[1])
    bottom, right = np.zeros(count + 1, dtype=np.int64), np.zeros(count + 1, dtype=np.int64)
    np.minimum.at(top, owners, rows)
    np.minimum.at(left, owners, columns)
    np.maximum.at(bottom, owners, rows + 1)
    np.maximum.at(right, owners, columns + 1)
    return tuple((int(top[k]), int(left[k]), int(bottom[k]), int(right[k])) for k in range(1, count + 1))


# ---- boxes ----


def _extent(bounds: tuple[int, int, int, int], options: CropOptions) -> np.ndarray:
    """(top, left, bottom, right) the box must hold: the bounding box with its context, at least the blend."""
    top, left, bottom, right = bounds
    margins = [
        max((options.context_factor - 1.0) * side / 2 + options.context_pixels, options.blend)
        for side in (bottom - top, right - left)
    ]
    return np.array([top - margins[0], left - margins[1], bottom + margins[0], right + margins[1]])


def smoothed_centres(centres: np.ndarray, frames: int = SMOOTHING_FRAMES) -> np.ndarray:
    """A centred moving average over ``frames`` frames of [frame, ...] values, the ends repeated: where the
    values move at most m between frames, the averages do too (each step is a difference of two values at
    most ``frames`` frames apart, over ``frames``)."""
    half = frames // 2
    padded = np.concatenate([np.repeat(centres[:1], half, axis=0), centres, np.repeat(centres[-1:], half, axis=0)])
    return np.stack([padded[i : i + frames].mean(axis=0) for i in range(centres.shape[0])])


def _canvas(extents: np.ndarray, centres: np.ndarray, options: CropOptions) -> tuple[int, int]:
    """(height, width) of one box for all of a track's frames: each frame's extent around its centre, one more
    pixel for rounding the box's corner, then widened to the target's aspect ratio."""
    reach = np.maximum(centres - extents[:, :2], extents[:, 2:] - centres).max(axis=0)
    height, width = (math.ceil(2 * side) + 1 for side in reach)
    if width * options.target_height < height * options.target_width:
        width = -(-height * options.target_width // options.target_height)
    else:
        height = -(-width * options.target_height // options.target_width)
    return height, width


def _place(centre: float, length: int, side: int) -> tuple[int, int, int, int]:
    """Start, length and padding (before, after) of a box along one side of the picture: centred where it
    fits, shifted inside the picture, or the whole side and padding when it is longer."""
    if length <= side:
        start = min(max(math.floor(centre - length / 2 + 0.5), 0), side - length)
        return start, length, 0, 0
    return 0, side, (length - side) // 2, length - side - (length - side) // 2


def _box(
    frame: int, centre: np.ndarray, canvas: tuple[int, int], size: tuple[int, int], empty: bool = False
) -> CropBox:
    top, height, pad_top, pad_bottom = _place(float(centre[0]), canvas[0], size[0])
    left, width, pad_left, pad_right = _place(float(centre[1]), canvas[1], size[1])
    return CropBox(frame, left, top, width, height, (pad_left, pad_right, pad_top, pad_bottom), empty)


def region_boxes(frames: list[Bounds], options: CropOptions, size: tuple[int, int]) -> list[list[CropBox]]:
    """Each frame's boxes from its regions' bounding boxes, one per region (a stand-in box of the target's size
    at the centre for a frame without one). Where every frame of several has the same number of regions, region
    k's boxes share one size and their centres are smoothed over the frames."""
    counts = {len(bounds) for bounds in frames}
    tracked = len(frames) > 1 and len(counts) == 1 and 0 not in counts
    boxes: list[list[CropBox]] = [[] for _ in frames]
    tracks = (
        [list(enumerate(bounds[k] for bounds in frames)) for k in range(counts.pop())]
        if tracked
        else [[(index, region)] for index, bounds in enumerate(frames) for region in bounds]
    )
    for track in tracks:
        extents = np.stack([_extent(bounds, options) for _, bounds in track])
        centres = (extents[:, :2] + extents[:, 2:]) / 2
        if tracked:
            centres = smoothed_centres(centres)
        canvas = _canvas(extents, centres, options)
        for (index, _), centre in zip(track, centres, strict=True):
            boxes[index].append(_box(index, centre, canvas, size))
    stand_in = (options.target_height, options.target_width)
    for index, frame_boxes in enumerate(boxes):
        if not frame_boxes:
            frame_boxes.append(_box(index, np.array(size) / 2, stand_in, size, empty=True))
    return boxes


# ---- crop ----


def matched_mask(mask: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
    """The MASK as [batch, height, width] in 0..1: resized as core resizes a mask (bilinear, as
    comfy.utils.reshape_mask), one mask given to every image."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3) or 0 in mask.shape:
        raise ValueError(f"mask must be a MASK [batch, height, width], got {getattr(mask, 'shape', mask)!r}")
    masks = mask.reshape(-1, 1, *mask.shape[-2:]).float().cpu()  # labeling runs in numpy
    if masks.shape[0] not in (1, batch):
        raise ValueError(f"mask: {masks.shape[0]} masks for {batch} images: give one mask, or one per image")
    if masks.shape[-2:] != (height, width):
        masks = F.interpolate(masks, size=(height, width), mode="bilinear")
    return masks[:, 0].clamp(0, 1).expand(batch, -1, -1)


def _context(weight: torch.Tensor, pad: tuple[int, ...], crop_mask: torch.Tensor, target: tuple[int, int]):
    """Where colour correction compares the edited crop with the original, at crop resolution: the blend ring
    outside the mask (0 < w < 1), weighted by w; without a ring (blend 0 or 1), all the context outside it."""
    ring = torch.where(weight < 1, weight, 0.0)
    if not ring.any():
        ring = (weight == 0).float()
    ring = resize(F.pad(ring[None, None], pad), target, "bilinear")[0, 0].clamp(0, 1)
    return torch.where(crop_mask == 0, ring, 0.0)


def _cut(image: torch.Tensor, regions: FrameRegions | None, box: CropBox, label: int, options: CropOptions):
    """One crop: its pixels and mask at the target size, its blend weight over its box, its context weights.
    A stand-in box (no ``regions``) gets an all-zero mask and weights."""
    rows, columns = slice(box.top, box.top + box.height), slice(box.left, box.left + box.width)
    target = (options.target_height, options.target_width)
    pixels = F.pad(image[box.frame, rows, columns].movedim(-1, 0)[None].float(), box.pad, mode="replicate")
    crop = resize(pixels, target, options.method).clamp(0, 1)[0].movedim(0, -1)
    if regions is None:
        support = torch.zeros(box.height, box.width, dtype=torch.bool, device=image.device)
        values = support.float()
    else:
        support = torch.from_numpy(regions.labels[rows, columns] == label).to(image.device)
        values = torch.where(support, regions.values[rows, columns].to(image.device), 0.0)
    # The padding is no part of the picture: its mask is 0, so the model keeps it and the stitch drops it.
    crop_mask = resize(F.pad(values[None, None], box.pad), target, "bilinear").clamp(0, 1)[0, 0]
    weight = blend_weight(support, options.blend)
    return crop, crop_mask, weight, _context(weight, box.pad, crop_mask, target)


def crop_regions(
    image: torch.Tensor, mask: torch.Tensor, options: CropOptions
) -> tuple[torch.Tensor, torch.Tensor, StitchRecord]:
    """The crops of every region of every frame (frame by frame, regions in reading order) at the target size,
    their masks, and the record the stitch needs. A frame without a region gets a stand-in crop of the target
    size at its centre, with an all-zero mask, and passes through the stitch unchanged."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or 0 in image.shape:
        raise ValueError(
            f"image must be an IMAGE [batch, height, width, channels], got {getattr(image, 'shape', image)!r}"
        )
    batch, height, width = image.shape[:3]
    masks = matched_mask(mask, batch, height, width)
    # Regions are found twice, for the boxes and for the cuts, rather than holding every frame's labels at once.
    bounds = [frame_regions(masks[index], options).bounds for index in range(batch)]
    cuts, boxes = [], []
    for index, frame_boxes in enumerate(region_boxes(bounds, options, (height, width))):
        regions = frame_regions(masks[index], options) if bounds[index] else None
        for label, box in enumerate(frame_boxes, start=1):
            cuts.append(_cut(image, regions, box, label, options))
            boxes.append(box)
    crops, crop_masks, weights, context = zip(*cuts, strict=True)
    notes = [f"no mask region in frame {box.frame}: it passes through unchanged" for box in boxes if box.empty]
    if len({len(frame) for frame in bounds}) > 1:
        notes.append("frames hold different numbers of regions: each frame's boxes are its own, not smoothed")
    crops = torch.stack(crops)
    # The record keeps its own copy of the crops: the stitch's exactness rests on them staying as cut.
    record = StitchRecord(
        image, tuple(boxes), crops.clone(), weights, torch.stack(context), options.method, tuple(notes)
    )
    return crops, torch.stack(crop_masks), record


# ---- stitch ----


def _edited_crops(record: StitchRecord, edited: torch.Tensor) -> torch.Tensor:
    """The edited crops in the record's size and channels (another size is resampled to it)."""
    count, size, channels = len(record.boxes), tuple(record.crops.shape[1:3]), record.crops.shape[-1]
    if not isinstance(edited, torch.Tensor) or edited.ndim != 4 or edited.shape[0] != count:
        raise ValueError(
            f"crops: {getattr(edited, 'shape', edited)!r} for the record's {count} crops: connect the crop "
            "node's crops after the edit, one image per crop, in their order"
        )
    edited = edited[..., :channels].to(record.crops)
    if tuple(edited.shape[1:3]) != size:
        edited = resize(edited.movedim(-1, 1), size, record.method).clamp(0, 1).movedim(1, -1)
    # Channels the edit lacks (a picture's alpha after the VAE's RGB) keep the crop's: their change is 0.
    return torch.cat([edited, record.crops[..., edited.shape[-1] :]], dim=-1)


def colour_corrected(edited: torch.Tensor, original: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``edited`` [height, width, channels] shifted in CIELAB by the ``weight``-ed mean of (original − edited):
    its tone and colour meet the original's in the context. The shift goes in as the difference of two
    conversions, so that a zero shift (an unedited context) changes nothing, bit for bit."""
    total = float(weight.sum())
    if total == 0:
        return edited
    lab = rgb_to_lab(edited[..., :3])
    shift = ((rgb_to_lab(original[..., :3]) - lab) * weight.to(lab)[..., None]).sum(dim=(0, 1)) / total
    change = (lab_to_rgb(lab + shift) - lab_to_rgb(lab)).to(edited.dtype)
    out = edited.clone()
    out[..., :3] = (edited[..., :3] + change).clamp(0, 1)
    return out


def _stitched_box(record: StitchRecord, index: int, edited: torch.Tensor, under: torch.Tensor) -> torch.Tensor:
    """``under`` (the box's current pixels) with crop ``index``'s change added: where w > 0 only."""
    box = record.boxes[index]
    change = resize((edited - record.crops[index]).movedim(-1, 0)[None], box.canvas, record.method)[0]
    change = change.movedim(0, -1)[box.pad[2] : box.pad[2] + box.height, box.pad[0] : box.pad[0] + box.width]
    weight = record.weights[index].to(under)[..., None]
    return torch.where(weight > 0, (under + weight * change).clamp(0, 1), under)


def ring_difference(stitched: torch.Tensor, original: torch.Tensor, weight: torch.Tensor) -> float:
    """The colour seam: the mean over the colour channels of |mean over the blend ring (0 < w < 1) of
    stitched − original|, in 0..1 (× 255 for 8-bit levels); 0 without a ring."""
    ring = (weight > 0) & (weight < 1)
    if not ring.any():
        return 0.0
    return float((stitched[ring][:, :3].double() - original[ring][:, :3].double()).mean(dim=0).abs().mean())


def stitch(
    record: StitchRecord, edited: torch.Tensor, colour_correction: bool = False
) -> tuple[torch.Tensor, list[float], list[float]]:
    """The input with every crop's change blended into its box, and each crop's ring figure with and without
    colour correction (the same without it)."""
    edited = _edited_crops(record, edited)
    out = record.image.clone()
    corrected, plain = [], []
    for index, box in enumerate(record.boxes):
        if box.empty:
            continue
        rows, columns = slice(box.top, box.top + box.height), slice(box.left, box.left + box.width)
        under, source = out[box.frame, rows, columns], record.image[box.frame, rows, columns]
        weight = record.weights[index].to(out)
        uncorrected = _stitched_box(record, index, edited[index], under)
        plain.append(ring_difference(uncorrected, source, weight))
        if colour_correction:
            crop = colour_corrected(edited[index], record.crops[index], record.context[index])
            out[box.frame, rows, columns] = _stitched_box(record, index, crop, under)
            corrected.append(ring_difference(out[box.frame, rows, columns], source, weight))
        else:
            out[box.frame, rows, columns] = uncorrected
    return out, (corrected if colour_correction else plain), plain

"""Fitting IMAGE and MASK to a size the VAE takes whole, so that nothing is silently cropped later.

Both are resized together keeping the aspect ratio, then each side is made a multiple (8 for most VAEs, 64
for some models) by cropping, padding or stretching. Resampling runs in torch on the tensors' own device,
in float32 from end to end.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FIT_MODES = ("crop", "pad", "stretch")
RESAMPLE_METHODS = ("lanczos", "bicubic", "bilinear", "nearest-exact")

_LANCZOS_LOBES = 3


def _resized_and_final_size(size: tuple[int, int], multiple: int, fit: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """The size to resample to and the size ``fit`` then crops or pads it to."""
    if fit == "stretch":
        stretched = (_nearest_multiple(size[0], multiple), _nearest_multiple(size[1], multiple))
        return stretched, stretched
    if fit == "crop":
        # A side shorter than one multiple gets one multiple: padded, as nothing can be cropped to it.
        return size, tuple(max(side // multiple, 1) * multiple for side in size)
    return size, tuple(-(-side // multiple) * multiple for side in size)


def fit_image_and_mask(
    image: torch.Tensor,
    mask: torch.Tensor,
    width: int = 0,
    height: int = 0,
    multiple: int = 8,
    fit: str = "crop",
    method: str = "lanczos",
) -> tuple[torch.Tensor, torch.Tensor]:
    """IMAGE [batch, height, width, channels] and MASK [batch, height, width] (or [height, width]) resized and
    adjusted identically, both sides a multiple of ``multiple``; float32 in 0..1.

    Size: ``width`` and ``height`` 0 keep the size; one of them 0 is computed from the other keeping the aspect
    ratio; both set fit the picture inside that box keeping the aspect ratio (one side matches the box, the
    other is at most the box's). Computed sides are rounded to the nearest pixel, at least 1.

    Then each side becomes a multiple by ``fit``:
    ``crop``: center crop to the multiple below (an odd pixel comes off the bottom or right). A side shorter
    than one multiple cannot be cropped to one, so it is padded up to one multiple as in ``pad``.
    ``pad``: pad to the multiple above, centered (an odd pixel goes to the bottom or right). The image's edge
    pixels are repeated into the pad, and the MASK is 1 there, as for transparent pixels (mask = 1 - alpha):
    the pad is not part of the picture. Mind that ComfyUI's inpainting nodes repaint where the MASK is 1.
    ``stretch``: resize straight to the nearest multiple of the aspect-kept size (at least one multiple), in one
    resampling, changing the aspect ratio by up to half a multiple per side.

    ``method`` resamples both the image and the MASK: ``bilinear`` and ``bicubic`` antialias when shrinking,
    ``lanczos`` is Lanczos-3 (widened when shrinking, so it antialiases too), ``nearest-exact`` copies pixels.
    The results are clamped to 0..1. Raises ValueError naming the input that is out of range.
    """
    if mask.ndim == 2:
        mask = mask[None]
    _check_inputs(image, mask, width, height, multiple, fit, method)
    pixels = image.movedim(-1, 1).float()
    coverage = mask[:, None].float()
    size, target = _resized_and_final_size(_aspect_size(image.shape[1], image.shape[2], width, height), multiple, fit)
    pixels, coverage = resize(pixels, size, method), resize(coverage, size, method)
    pixels, coverage = _crop(pixels, target), _crop(coverage, target)
    # F.pad's order: left, right, top, bottom.
    padding = [amount for axis in (1, 0) for amount in _centered_padding(size[axis], target[axis])]
    if any(padding):
        pixels = F.pad(pixels, padding, mode="replicate")
        coverage = F.pad(coverage, padding, mode="constant", value=1.0)
    return pixels.movedim(1, -1).clamp(0.0, 1.0), coverage[:, 0].clamp(0.0, 1.0)


def _check_inputs(
    image: torch.Tensor, mask: torch.Tensor, width: int, height: int, multiple: int, fit: str, method: str
) -> None:
    if image.ndim != 4 or image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"image must be an IMAGE [batch, height, width, channels], got shape {tuple(image.shape)}")
    if mask.ndim != 3 or mask.shape[1:] != image.shape[1:3]:
        raise ValueError(
            f"mask must be a MASK [batch, height, width] of the image's size {tuple(image.shape[1:3])}, "
            f"got shape {tuple(mask.shape)}"
        )
    for name, value, least in (("width", width, 0), ("height", height, 0), ("multiple", multiple, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be a whole number ≥ {least}, got {value!r}")
    if fit not in FIT_MODES:
        raise ValueError(f"fit must be one of {', '.join(FIT_MODES)}, got {fit!r}")
    if method not in RESAMPLE_METHODS:
        raise ValueError(f"method must be one of {', '.join(RESAMPLE_METHODS)}, got {method!r}")


def _aspect_size(height: int, width: int, target_width: int, target_height: int) -> tuple[int, int]:
    """(height, width) per the size rule of fit_image_and_mask, before making them multiples."""
    if not target_width and not target_height:
        return height, width
    # The width decides when it alone is given, or when the box is narrower than the picture's aspect ratio.
    if not target_height or (target_width and target_width * height <= target_height * width):
        return max(1, _rounded_ratio(height * target_width, width)), target_width
    return target_height, max(1, _rounded_ratio(width * target_height, height))


def _rounded_ratio(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, in integers so that no float error tips a half."""
    return (2 * numerator + denominator) // (2 * denominator)


def _nearest_multiple(side: int, multiple: int) -> int:
    return max(_rounded_ratio(side, multiple), 1) * multiple


def _centered_padding(side: int, target: int) -> tuple[int, int]:
    """Pixels to add before and after a side to reach target (none when it is not longer)."""
    extra = max(target - side, 0)
    return extra // 2, extra - extra // 2


def _crop(pixels: torch.Tensor, target: tuple[int, int]) -> torch.Tensor:
    """Center crop [batch, channels, height, width] to at most target (height, width)."""
    height, width = pixels.shape[-2:]
    top, left = max(height - target[0], 0) // 2, max(width - target[1], 0) // 2
    return pixels[..., top : top + min(height, target[0]), left : left + min(width, target[1])]


def resize(pixels: torch.Tensor, size: tuple[int, int], method: str) -> torch.Tensor:
    """[batch, channels, height, width] resampled to size (height, width) with one of RESAMPLE_METHODS, as
    fit_image_and_mask resamples (unclamped: Lanczos and bicubic overshoot at edges)."""
    if tuple(pixels.shape[-2:]) == size:
        return pixels
    if method == "lanczos":
        return _lanczos(_lanczos(pixels, size[0], dim=-2), size[1], dim=-1)
    if method == "nearest-exact":
        return F.interpolate(pixels, size=size, mode="nearest-exact")
    shrinking = size[0] < pixels.shape[-2] or size[1] < pixels.shape[-1]
    return F.interpolate(pixels, size=size, mode=method, align_corners=False, antialias=shrinking)


def _lanczos(pixels: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Lanczos-3 resampling of one axis as a convolution whose weights are computed per output pixel."""
    length = pixels.shape[dim]
    if size == length:
        return pixels
    scale = size / length
    # Shrinking widens the kernel by the shrink factor, so that it low-passes what the new grid cannot hold.
    widen = max(1.0, 1.0 / scale)
    support = _LANCZOS_LOBES * widen
    centres = (torch.arange(size, device=pixels.device, dtype=torch.float32) + 0.5) / scale - 0.5
    first = torch.floor(centres - support) + 1
    positions = first[:, None] + torch.arange(math.ceil(2 * support) + 1, device=pixels.device)
    distance = (positions - centres[:, None]) / widen
    inside = (distance.abs() < _LANCZOS_LOBES) & (positions >= 0) & (positions < length)
    weights = torch.sinc(distance) * torch.sinc(distance / _LANCZOS_LOBES) * inside
    # Taps past the edges are dropped and the rest normalized, as Pillow does: a flat area stays flat.
    weights = weights / weights.sum(dim=1, keepdim=True)
    sources = positions.long().clamp(0, length - 1)
    lines = pixels.movedim(dim, -1)
    resized = sum(lines.index_select(-1, sources[:, tap]) * weights[:, tap] for tap in range(sources.shape[1]))
    return resized.movedim(-1, dim)

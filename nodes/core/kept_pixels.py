"""Putting the source's own pixels back where a strength map (or noise mask) kept them, and its colours.

The composite is ``lerp(source, decoded, w)`` with ``w = map × min(1, d / feather)``: ``d`` counts how many
pixels (8-neighbourhood steps) a pixel lies inside the map's non-zero area. A pixel of map 0 has ``w = 0``
and is the source's value bit for bit; a hard mask edge fades in over ``feather`` pixels inside the changed
area instead of showing the VAE round trip's seam; a soft map crossfades as it goes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resized_map(strength_map: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A MASK ([h, w] or [batch, h, w]) as [batch, height, width, 1], bilinear like core's mask resizing."""
    batched = strength_map.reshape(-1, 1, *strength_map.shape[-2:]).float()
    if batched.shape[-2:] != (height, width):
        batched = F.interpolate(batched, size=(height, width), mode="bilinear").clamp(0, 1)
    return batched.movedim(1, -1)


def feathered_weight(strength_map: torch.Tensor, feather: int) -> torch.Tensor:
    """``w`` of the module's blend, for a [batch, height, width, 1] map."""
    if feather <= 1:
        return strength_map
    inside = (strength_map > 0).float().movedim(-1, 1)
    depth = torch.zeros_like(inside)
    for _ in range(feather):
        depth += inside
        inside = -F.max_pool2d(-inside, kernel_size=3, stride=1, padding=1)  # erode by one pixel
    return strength_map * (depth / feather).movedim(1, -1)


def composite(decoded: torch.Tensor, source: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The source where ``weight`` is 0 (exactly), the decoded picture where it is 1, blended between."""
    return torch.lerp(source.to(decoded.dtype), decoded, weight.to(decoded.dtype))


# sRGB (D65) to CIELAB, as colour-science defines them.
_RGB_TO_XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=torch.float64,
)
_WHITE = _RGB_TO_XYZ.sum(dim=1)
_EPSILON, _KAPPA = 216 / 24389, 24389 / 27


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """[..., 3] sRGB in 0..1 to CIELAB (L 0..100), in float64."""
    rgb = rgb.double().clamp(0, 1)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T.to(rgb.device) / _WHITE.to(rgb.device)
    f = torch.where(xyz > _EPSILON, xyz.clamp(min=0) ** (1 / 3), (_KAPPA * xyz + 16) / 116)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], dim=-1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB to sRGB in 0..1 (out-of-gamut colours clipped), float64."""
    fy = (lab[..., 0] + 16) / 116
    f = torch.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], dim=-1)
    xyz = torch.where(f**3 > _EPSILON, f**3, (116 * f - 16) / _KAPPA) * _WHITE.to(lab.device)
    linear = (xyz @ torch.linalg.inv(_RGB_TO_XYZ).T.to(lab.device)).clamp(0, 1)
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055).clamp(0, 1)


def _match_channel(values: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Each value moved to the template's value at the same quantile (equal values stay equal)."""
    _, positions, counts = np.unique(values, return_inverse=True, return_counts=True)
    template_values, template_counts = np.unique(template, return_counts=True)
    quantiles = np.cumsum(counts) / values.size
    template_quantiles = np.cumsum(template_counts) / template.size
    return np.interp(quantiles, template_quantiles, template_values)[positions].reshape(values.shape)


def match_colours(images: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Each image's L, a and b histograms matched to its source image's (A1111's colour correction)."""
    out = torch.empty_like(images)
    for index in range(images.shape[0]):
        lab = rgb_to_lab(images[index, ..., :3]).cpu().numpy()
        template = rgb_to_lab(source[min(index, source.shape[0] - 1), ..., :3]).cpu().numpy()
        matched = np.stack([_match_channel(lab[..., c], template[..., c]) for c in range(3)], axis=-1)
        out[index, ..., :3] = lab_to_rgb(torch.from_numpy(matched)).to(images.device, images.dtype)
    if images.shape[-1] > 3:
        out[..., 3:] = images[..., 3:]
    return out


def mean_delta_e(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean CIE76 colour difference between two images of the same size."""
    return float((rgb_to_lab(a[..., :3]) - rgb_to_lab(b[..., :3])).norm(dim=-1).mean())

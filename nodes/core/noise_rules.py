"""How each family of models mixes a clean latent x0 with noise ε at a noise level σ: the one place the pack
keeps these rules.

- Noise added (SD1.x, SDXL eps and v-prediction, LCM, EDM, continuous v): x = x0 + σ·ε. The signal's
  standard deviation is the model's σ_data (1 for all but EDM models trained on rescaled latents, such as
  Playground v2.5: 0.5), so the signal-to-noise ratio is SNR = σ_data² / σ².
- Rectified flow (SD3, Flux, AuraFlow): x = (1 − σ)·x0 + σ·ε, so SNR = ((1 − σ) / σ)² (σ_data plays no part:
  these models' latents are normalised, and their noise level never exceeds 1).
"""

from __future__ import annotations

import math


def signal_to_noise(sigma: float, flow: bool, sigma_data: float = 1.0) -> float:
    """The SNR of a latent noised to ``sigma`` by its family's rule (inf at sigma 0, 0 at pure noise)."""
    if sigma <= 0:
        return math.inf
    if flow:
        return ((1.0 - min(sigma, 1.0)) / sigma) ** 2
    return (sigma_data / sigma) ** 2


def sigma_for_snr_strength(strength: float, flow: bool, sigma_data: float = 1.0) -> float:
    """The noise level where strength s puts the SNR at ((1 − s) / s)²: the same on every family.

    Rectified flow mixes x0 and noise in exactly the proportions 1 − s and s there, so σ = s; a noise-added
    model reaches that SNR at σ = σ_data · s / (1 − s). Strength 1 is pure noise (σ = inf: the caller caps it
    at the model's σ_max and starts as txt2img does); strength 0 is no noise.
    """
    if not 0.0 <= strength <= 1.0 or math.isnan(strength):
        raise ValueError(f"denoise must be a number from 0 to 1, got {strength!r}")
    if flow:
        return strength
    if strength == 1.0:
        return math.inf
    return sigma_data * strength / (1.0 - strength)

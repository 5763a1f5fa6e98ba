"""The paper's augmentation (§4.1) and input normalisation (§2).

Split for speed: the loader workers do what shrinks the data (the random 224 crop, copied
once, straight into a preallocated uint8 batch); the device does the rest for a whole
batch at once (mirroring, mean subtraction, PCA lighting). Measured on 2 cores
(bench/loader_throughput.py): flipping and collating in the workers cost ~20% of the
per-core decode rate. tests/augment_reference.py holds the plain per-image version the
tests compare with.
"""
from __future__ import annotations

import random

import torch

from shared.stats import RgbStats


def draw_crop(height: int, width: int, crop: int, rng: random.Random) -> tuple[int, int, bool]:
    """§4.1: top-left corner of a random crop x crop patch, and whether to mirror it (p = 0.5)."""
    return rng.randint(0, height - crop), rng.randint(0, width - crop), rng.random() < 0.5


class DeviceAugment:
    """On device batches: mirroring and PCA colour lighting (§4.1) while training, then
    per-channel mean subtraction (§2; optionally divided by the std) for every batch.

    Lighting: each image gets delta = sum_i alpha_i sigma_i p_i added to every pixel, with
    alpha_i ~ N(0, pca_std) and p_i, lambda_i = sigma_i^2 the eigenvectors/eigenvalues of the
    training set's RGB covariance (0-255 units). The paper writes alpha_i lambda_i; Krizhevsky's
    cuda-convnet2 (convdata.py, ColorNoiseMakerThread, --color-noise 0.1) scales by the
    standard deviations sigma_i, which keeps delta in pixel units: we follow the code.
    """

    def __init__(self, stats: RgbStats, pca_std: float, divide_std: bool, device: torch.device):
        self.mean = torch.tensor(stats.mean_rgb, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(stats.std_rgb if divide_std else [1.0] * 3, device=device).view(1, 3, 1, 1)
        sigma = torch.tensor(stats.eigenvalues, dtype=torch.float64).clamp(min=0).sqrt()
        vectors = torch.tensor(stats.eigenvectors, dtype=torch.float64)  # rows = p_i (R, G, B)
        self.sigma_p = (sigma[:, None] * vectors).float().to(device)  # row i = sigma_i p_i
        self.pca_std = pca_std

    def draw_alphas(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(batch, 3, generator=generator) * self.pca_std

    def lighting_offsets(self, alphas: torch.Tensor) -> torch.Tensor:
        """(B, 3) RGB offsets: alphas @ [sigma_i p_i]."""
        return alphas.to(self.sigma_p.device, torch.float32) @ self.sigma_p

    def __call__(self, x: torch.Tensor, alphas: torch.Tensor | None = None,
                 flips: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (B, 3, H, W) on device -> float32, channels_last; `flips` (B,) bool mirrors."""
        x = x.float()
        if flips is not None:
            x = torch.where(flips.to(x.device)[:, None, None, None], x.flip(-1), x)
        x = x - self.mean
        if alphas is not None:
            x = x + self.lighting_offsets(alphas)[:, :, None, None]
        return (x / self.std).contiguous(memory_format=torch.channels_last)


def centre_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    return x[..., top:top + crop, left:left + crop]


def ten_views(x: torch.Tensor, crop: int) -> list[torch.Tensor]:
    """§4.1 test-time views: four corner crops and the centre crop, and their reflections."""
    h, w = x.shape[-2:]
    corners = [x[..., :crop, :crop], x[..., :crop, w - crop:], x[..., h - crop:, :crop],
               x[..., h - crop:, w - crop:], centre_crop(x, crop)]
    return corners + [v.flip(-1) for v in corners]

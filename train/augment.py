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
from dataclasses import dataclass

import numpy as np
import torch

from shared.stats import RgbStats


def draw_crop(height: int, width: int, crop: int, rng: random.Random) -> tuple[int, int, bool]:
    """§4.1: top-left corner of a random crop x crop patch, and whether to mirror it (p = 0.5)."""
    return rng.randint(0, height - crop), rng.randint(0, width - crop), rng.random() < 0.5


NORMALIZATIONS = ("mean-image", "mean", "std")


@dataclass(frozen=True)
class InputStats:
    """What the network's input is normalised with; stored in checkpoints so that `predict`
    needs nothing else. `mean` is (3, crop, crop) for "mean-image" -- the centre crop of the
    training set's mean image, subtracted from every crop whatever its position, as
    cuda-convnet2's ImageDataProvider does (convdata.py: data_mean_crop) -- or (3, 1, 1)."""
    mean: torch.Tensor
    std: torch.Tensor  # (3, 1, 1): ones unless "std"
    eigenvalues: torch.Tensor  # (3,) descending, 0-255 units squared
    eigenvectors: torch.Tensor  # (3, 3), row i = p_i

    def state(self) -> dict:
        return {k: getattr(self, k).clone() for k in ("mean", "std", "eigenvalues", "eigenvectors")}


def input_stats(stats: RgbStats, mode: str, crop: int, mean_image: np.ndarray | None = None) -> InputStats:
    """§2 "subtracting the mean activity over the training set from each pixel": the mean
    image ("mean-image", cuda-convnet2), or per channel ("mean"; "std" also divides)."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize {mode!r}: expected one of {', '.join(NORMALIZATIONS)}")
    if mode == "mean-image":
        if mean_image is None:
            raise ValueError("--normalize mean-image needs mean_image.npy (alexnet-prep stats writes it)")
        mean = centre_crop(torch.from_numpy(np.ascontiguousarray(mean_image.transpose(2, 0, 1))), crop)
    else:
        mean = torch.tensor(stats.mean_rgb, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(stats.std_rgb if mode == "std" else [1.0] * 3, dtype=torch.float64).view(3, 1, 1)
    return InputStats(mean.float(), std.float(), torch.tensor(stats.eigenvalues, dtype=torch.float64),
                      torch.tensor(stats.eigenvectors, dtype=torch.float64))


class DeviceAugment:
    """On device batches: mirroring and PCA colour lighting (§4.1) while training, then the
    mean subtraction of §2 (InputStats) for every batch.

    Lighting: each image gets delta = sum_i alpha_i sigma_i p_i added to every pixel, with
    alpha_i ~ N(0, pca_std) and p_i, lambda_i = sigma_i^2 the eigenvectors/eigenvalues of the
    training set's RGB covariance (0-255 units). The paper writes alpha_i lambda_i; Krizhevsky's
    cuda-convnet2 (convdata.py, ColorNoiseMakerThread, --color-noise 0.1) scales by the
    standard deviations sigma_i, which keeps delta in pixel units: we follow the code.
    """

    def __init__(self, inputs: InputStats, pca_std: float, device: torch.device):
        self.mean = inputs.mean.to(device)[None]
        self.std = inputs.std.to(device)[None]
        self.unit_std = bool((inputs.std == 1).all())
        sigma = inputs.eigenvalues.clamp(min=0).sqrt()
        self.sigma_p = (sigma[:, None] * inputs.eigenvectors).float().to(device)  # row i = sigma_i p_i
        self.pca_std = pca_std

    def draw_alphas(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(batch, 3, generator=generator) * self.pca_std

    def lighting_offsets(self, alphas: torch.Tensor) -> torch.Tensor:
        """(B, 3) RGB offsets: alphas @ [sigma_i p_i]."""
        return alphas.to(self.sigma_p.device, torch.float32) @ self.sigma_p

    def __call__(self, x: torch.Tensor, alphas: torch.Tensor | None = None,
                 flips: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (B, 3, H, W) on device -> float32, channels_last; `flips` (B,) bool mirrors
        (the image, not the mean: cuda-convnet2 subtracts after cropping and flipping)."""
        x = x.to(torch.float32, copy=True)  # the in-place steps below never touch the caller's batch
        if flips is not None:
            x = torch.where(flips.to(x.device)[:, None, None, None], x.flip(-1), x)
        x.sub_(self.mean)
        if alphas is not None:
            x.add_(self.lighting_offsets(alphas)[:, :, None, None])
        if not self.unit_std:  # "mean-image" and "mean": nothing to divide by
            x.div_(self.std)
        return x.contiguous(memory_format=torch.channels_last)


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

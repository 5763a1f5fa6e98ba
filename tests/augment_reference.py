"""Plain per-image §4.1 and §2, written from the paper for the tests to compare the batched
device path against (not used by the training code)."""
from __future__ import annotations

import random

import torch

from shared.stats import RgbStats
from train.augment import draw_crop


def random_crop_flip(img: torch.Tensor, crop: int, rng: random.Random) -> torch.Tensor:
    """One image through the loader's `draw_crop`."""
    top, left, flip = draw_crop(img.shape[1], img.shape[2], crop, rng)
    patch = img[:, top:top + crop, left:left + crop]
    return patch.flip(-1) if flip else patch


def augment_one_reference(img: torch.Tensor, top: int, left: int, flip: bool, alphas: torch.Tensor,
                          stats: RgbStats, crop: int = 224, mean_image=None) -> torch.Tensor:
    """Crop, mirror, subtract the mean (per channel, or the mean image's centre crop, unflipped,
    as cuda-convnet2), add sum_i alpha_i sigma_i p_i to every pixel."""
    out = img[:, top:top + crop, left:left + crop].double()
    if flip:
        out = out.flip(-1)
    h, w = img.shape[1:]
    for c in range(3):
        delta = sum(float(alphas[i]) * stats.eigenvalues[i] ** 0.5 * stats.eigenvectors[i][c] for i in range(3))
        if mean_image is None:
            mean = stats.mean_rgb[c]
        else:
            t0, l0 = (h - crop) // 2, (w - crop) // 2
            mean = torch.from_numpy(mean_image[t0:t0 + crop, l0:l0 + crop, c]).double()
        out[c] = out[c] - mean + delta
    return out

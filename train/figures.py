"""The paper's pictures: Figure 3 (conv1 kernels) and Figure 4 (top-5 predictions; training
images nearest in fc7 space). PNG files in the run folder and TensorBoard images."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from shared.manifest import Manifest

from .augment import centre_crop
from .loader import EvalShards, SampleRules
from .run_folder import FIGURE_NAMES

KERNELS_PNG, TOP5_PNG, NEIGHBOURS_PNG = FIGURE_NAMES

KERNEL_ZOOM = 4
PER_ROW = 16


def kernel_grid(weight: torch.Tensor, per_row: int = PER_ROW, zoom: int = KERNEL_ZOOM) -> np.ndarray:
    """conv1 kernels (96, 3, 11, 11) -> one RGB image laid out like Figure 3: kernels of the
    first group (0..47, "GPU 1") in the top rows, the second group's below a gap. Each kernel
    is contrast-normalised to [0, 255] on its own."""
    w = weight.detach().float().cpu().numpy()
    n, _, kh, kw = w.shape
    groups = [w[: n // 2], w[n // 2:]]
    cell_h, cell_w = kh * zoom + 1, kw * zoom + 1
    rows_per_group = -(-(n // 2) // per_row)
    gap = cell_h // 2
    grid = np.full((2 * rows_per_group * cell_h + gap, per_row * cell_w, 3), 255, np.uint8)
    for g, kernels in enumerate(groups):
        for i, k in enumerate(kernels):
            k = k.transpose(1, 2, 0)
            k = (k - k.min()) / max(float(k.max() - k.min()), 1e-12)
            tile = np.kron((k * 255).round().astype(np.uint8), np.ones((zoom, zoom, 1), np.uint8))
            r, c = divmod(i, per_row)
            top = g * (rows_per_group * cell_h + gap) + r * cell_h
            grid[top:top + kh * zoom, c * cell_w:c * cell_w + kw * zoom] = tile
    return grid


def log_kernel_figure(model, writer, run: Path, step: int) -> Path:
    grid = kernel_grid(model.conv1.weight)
    path = run / KERNELS_PNG
    Image.fromarray(grid).save(path)
    if writer is not None:
        writer.add_image("figures/conv1_kernels", grid, step, dataformats="HWC")
    return path


def class_labels(manifest: Manifest) -> list[str]:
    """Display names; the wnid is added where two classes share a name (ImageNet's 'crane')."""
    names = [c.name.split(",")[0] for c in manifest.classes]
    return [f"{n} ({c.wnid})" if names.count(n) > 1 and c.wnid else n for n, c in zip(names, manifest.classes)]


def top5(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Five most probable classes per row, sorted by probability (descending)."""
    values, indices = probs.topk(min(5, probs.shape[1]), dim=1, sorted=True)
    return values, indices


def nearest_neighbours(queries: torch.Tensor, pool: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest rows of `pool` to each query in Euclidean distance (float64)."""
    dist = torch.cdist(queries.double(), pool.double())
    values, indices = dist.topk(min(k, pool.shape[0]), dim=1, largest=False, sorted=True)
    return values, indices


def load_images(urls: list[str], rules: SampleRules, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for img, label in EvalShards(urls, rules, limit=limit):
        images.append(img)
        labels.append(label)
        if len(images) == limit:
            break
    return torch.stack(images), torch.tensor(labels)


def pick_spread(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Up to n indices, cycling over classes so that the figure shows several."""
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        by_class.setdefault(label, []).append(i)
    order = []
    for depth in range(max(len(v) for v in by_class.values())):
        order += [v[depth] for v in by_class.values() if depth < len(v)]
    return torch.tensor(order[:n])


@torch.no_grad()
def fc7_features(model, images: torch.Tensor, augment, device, crop: int, batch: int = 64):
    model.eval()
    feats, probs = [], []
    for i in range(0, len(images), batch):
        x = augment(centre_crop(images[i:i + batch].to(device), crop))
        h = model.penultimate(x)
        feats.append(h.float().cpu())
        probs.append(F.softmax(model.fc8(model.dropout(h)).float(), dim=1).cpu())  # dropout: x0.5 under "paper"
    return torch.cat(feats), torch.cat(probs)


def _pyplot():
    """matplotlib only where Figure 4 is drawn: training runs without it (--no-figures)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: files only
    import matplotlib.pyplot as plt

    return plt


def _show(ax, img: torch.Tensor, title: str = "", colour: str = "black") -> None:
    ax.imshow(img.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7, color=colour)


def _to_png(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return np.asarray(Image.open(buf).convert("RGB"))


def write_prediction_figures(model, manifest: Manifest, shards: Path, augment, device, crop: int,
                             run: Path, writer=None, n_queries: int = 8, k: int = 6,
                             pool_size: int = 2000, url_template: str | None = None) -> list[Path]:
    """Figure 4: left, top-5 for `n_queries` eval images; right, each query and the `k`
    training images whose fc7 activations are nearest (from the first `pool_size`; not for an
    evaluation-only dataset, which has no training images)."""
    names = class_labels(manifest)
    rules = SampleRules(manifest.patch_size, manifest.num_classes)
    candidates, c_labels = load_images(manifest.shard_paths(shards, manifest.reported_split, url_template), rules,
                                       25 * n_queries)
    chosen = pick_spread(c_labels, n_queries)
    queries, q_labels = candidates[chosen], c_labels[chosen]
    q_feats, q_probs = fc7_features(model, queries, augment, device, crop)
    values, indices = top5(q_probs)
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(queries), figsize=(1.6 * len(queries), 3.6),
                             gridspec_kw={"height_ratios": [2, 1.6]}, squeeze=False)
    for j in range(len(queries)):
        _show(axes[0, j], centre_crop(queries[j], crop), names[int(q_labels[j])])
        ax = axes[1, j]
        bars = values[j].numpy()[::-1]  # most probable on top, as in Figure 4
        classes = [int(c) for c in indices[j].flip(0)]
        ax.barh(range(len(bars)), bars, color=["tab:red" if c == int(q_labels[j]) else "tab:blue" for c in classes])
        for row, c in enumerate(classes):  # names inside the panel; the true class in red
            ax.text(0.02, row, names[c][:18], va="center", fontsize=6,
                    color="darkred" if c == int(q_labels[j]) else "black")
        ax.set_yticks([])
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=6)
    figures = [(TOP5_PNG, _to_png(fig))]
    if "train" in manifest.splits:
        pool, _ = load_images(manifest.shard_paths(shards, "train", url_template), rules, pool_size)
        p_feats, _ = fc7_features(model, pool, augment, device, crop)
        _, nn_idx = nearest_neighbours(q_feats, p_feats, k)
        fig, axes = plt.subplots(len(queries), k + 1, figsize=(1.2 * (k + 1), 1.25 * len(queries)), squeeze=False)
        for j in range(len(queries)):
            _show(axes[j, 0], centre_crop(queries[j], crop), "query" if j == 0 else "")
            for c, idx in enumerate(nn_idx[j]):
                _show(axes[j, c + 1], centre_crop(pool[int(idx)], crop), f"nn {c + 1}" if j == 0 else "")
        figures.append((NEIGHBOURS_PNG, _to_png(fig)))
    paths = []
    for name, img in figures:
        Image.fromarray(img).save(run / name)
        paths.append(run / name)
        if writer is not None:
            writer.add_image(f"figures/{name[:-4]}", img, 0, dataformats="HWC")
    return paths


def write_training_curve(rows: list[dict], path: Path) -> Path:
    """The run's curve from its metrics.jsonl rows: training loss and holdout error@1 per
    epoch, each ε drop of §5's schedule marked, as curve.png beside the other figures."""
    plt = _pyplot()
    fig, (loss_ax, err_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = [r["epoch"] for r in rows]
    loss_ax.plot(epochs, [r["train"]["loss"] for r in rows], marker="o", ms=3)
    loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log")
    err_ax.plot(epochs, [r["holdout"]["error@1"] for r in rows], marker="o", ms=3, label="holdout error@1")
    err_ax.set(xlabel="epoch", ylabel="holdout error@1 (centre crop)")
    for ax in (loss_ax, err_ax):
        for r in rows:
            if "lr_drop" in r:
                ax.axvline(r["epoch"] + 0.5, color="grey", ls="--", lw=0.8)
        ax.grid(alpha=0.3)
    err_ax.set_title(f"ε {rows[0]['lr']:g} at the start; dashed: ε ÷ 10", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

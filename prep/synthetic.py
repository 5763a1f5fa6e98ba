"""A small, learnable dataset written in the Kaggle ImageNet layout, for the demo and
for users without data: each class is one shape in its own colour (jittered; random size
and position) on a random smooth background, at ImageNet-like sizes so the real prep
path runs. Colour makes it learnable within the demo's few hundred CPU steps; shape
alone took longer than the demo's budget from the §5 initialisation."""
from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("disc", "square", "triangle", "cross", "ring", "bar", "diamond", "star")
COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 210, 40),
           (200, 60, 210), (40, 210, 210), (240, 140, 30), (250, 250, 250))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour) -> None:
    if shape == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "cross":
        draw.rectangle([cx - r, cy - r / 3, cx + r, cy + r / 3], fill=colour)
        draw.rectangle([cx - r / 3, cy - r, cx + r / 3, cy + r], fill=colour)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=max(2, int(r / 4)))
    elif shape == "bar":
        draw.rectangle([cx - r, cy - r / 4, cx + r, cy + r / 4], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    else:  # star: two overlaid triangles
        draw.polygon([(cx, cy - r), (cx - r, cy + r / 2), (cx + r, cy + r / 2)], fill=colour)
        draw.polygon([(cx, cy + r), (cx - r, cy - r / 2), (cx + r, cy - r / 2)], fill=colour)


def render_shape_image(index: int, rng: random.Random) -> Image.Image:
    width, height = rng.randint(300, 420), rng.randint(260, 360)
    # Smooth random background: an upsampled 6x6 colour grid, blurred.
    grid = Image.new("RGB", (6, 6))
    grid.putdata([(g, g, g) for g in (rng.randint(60, 190) for _ in range(36))])  # grey: colour is the shape's
    img = grid.resize((width, height), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(8))
    draw = ImageDraw.Draw(img)
    short = min(width, height)
    r = rng.uniform(0.18, 0.3) * short
    cx = width / 2 + rng.uniform(-0.15, 0.15) * short
    cy = height / 2 + rng.uniform(-0.15, 0.15) * short
    colour = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in COLOURS[index])
    _draw_shape(draw, SHAPES[index], cx, cy, r, colour)
    return img


def write_synthetic_kaggle(root: Path, classes: int, train_per_class: int, val_per_class: int,
                           seed: int = 0) -> None:
    if not 2 <= classes <= len(SHAPES):
        raise ValueError(f"classes={classes}: expected 2..{len(SHAPES)} (one shape each: {SHAPES})")
    rng = random.Random(seed)
    wnids = [f"n{9000000 + i:08d}" for i in range(classes)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "LOC_synset_mapping.txt").write_text(
        "".join(f"{w} {SHAPES[i]}, synthetic shape\n" for i, w in enumerate(wnids)))
    base = root / "ILSVRC" / "Data" / "CLS-LOC"
    rows = ["ImageId,PredictionString"]
    val_index = 0
    for i, wnid in enumerate(wnids):
        folder = base / "train" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(train_per_class):
            render_shape_image(i, rng).save(folder / f"{wnid}_{n}.JPEG", quality=92)
        for _ in range(val_per_class):
            val_index += 1
            image_id = f"ILSVRC2012_val_{val_index:08d}"
            (base / "val").mkdir(parents=True, exist_ok=True)
            img = render_shape_image(i, rng)
            img.save(base / "val" / f"{image_id}.JPEG", quality=92)
            rows.append(f"{image_id},{wnid} 0 0 {img.width - 1} {img.height - 1} ")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")

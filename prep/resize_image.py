"""One image -> the paper's 256x256 patch (§2): shorter side rescaled to 256, centre crop.

Fast path, measured in bench/prep_throughput.py:
- JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale in the DCT domain
  while both sides stay >= 256, so large images are never fully decoded;
- only the crop box is resampled (Pillow's `resize(box=...)` reads the pixels
  around the box that the filter needs, so this equals resize-then-crop);
- pillow-simd, when installed, vectorises the resampling and colour conversion.
"""
from __future__ import annotations

import io
import warnings
from importlib import metadata

import numpy as np
from PIL import Image

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
            "lanczos": Image.Resampling.LANCZOS}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def pillow_flavour() -> dict:
    """Which Pillow is active; warns once if it is the stock (slower) one."""
    try:
        return {"pillow": metadata.version("pillow-simd"), "simd": True}
    except metadata.PackageNotFoundError:
        import PIL

        return {"pillow": PIL.__version__, "simd": False}


def warn_if_stock_pillow() -> dict:
    flavour = pillow_flavour()
    if not flavour["simd"]:
        warnings.warn(f"pillow-simd is not installed; using stock Pillow {flavour['pillow']}: results "
                      f"are the same, resizing is ~2x slower (see README, 'Set-up')", stacklevel=2)
    return flavour


def convert_to_rgb(img: Image.Image) -> Image.Image:
    """Any mode -> RGB. Transparency is composited over white; 16-bit greys are scaled."""
    if img.mode == "RGB":
        return img
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode.startswith("I;16") or img.mode == "I":
        grey = np.asarray(img, dtype=np.float64) / 257.0  # 0..65535 -> 0..255
        return Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")  # L, P, CMYK (Adobe inversion handled by the decoder), YCbCr, ...


def open_image(fp, size: int) -> tuple[Image.Image, tuple[int, int]]:
    """Opens and decodes `fp` as RGB; returns it with the original (width, height)."""
    img = Image.open(fp)
    original = img.size
    if img.format == "JPEG":
        img.draft("RGB", (size, size))  # largest DCT scale-down keeping both sides >= size
    img.load()  # decode now so truncated files fail here, naming this input
    return convert_to_rgb(img), original


def centre_crop_box(width: int, height: int, size: int) -> tuple[float, float, float, float]:
    """The source-pixel box that becomes the central size x size patch after scaling
    the shorter side to `size` (same rounding as resize-then-crop)."""
    scale = size / min(width, height)
    scaled_w, scaled_h = round(width * scale), round(height * scale)
    left, top = (scaled_w - size) // 2, (scaled_h - size) // 2
    return (left / scale, top / scale, (left + size) / scale, (top + size) / scale)


def resize_centre_crop(img: Image.Image, size: int, resample: str = "bilinear") -> Image.Image:
    if resample not in RESAMPLE:
        raise ValueError(f"resample {resample!r}: expected one of {sorted(RESAMPLE)}")
    box = centre_crop_box(img.width, img.height, size)
    return img.resize((size, size), RESAMPLE[resample], box=box)


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()

"""One image -> the paper's 256x256 patch (§2): shorter side rescaled to 256, centre crop.

Part of the contract: this is how every `.jpg` member of a shard is made, and how
`alexnet-train predict` turns anyone's image into the same kind of patch.

Fast path, measured in bench/prep_throughput.py:
- JPEGs decode at 1/2, 1/4 or 1/8 scale in the DCT domain while both sides stay >= 256
  (Pillow's draft-mode rule), so large images are never fully decoded;
- only the crop box is resampled (Pillow's `resize(box=...)` reads the pixels
  around the box that the filter needs, so this equals resize-then-crop);
- pillow-simd, when installed, vectorises the resampling and colour conversion.

Untrusted input: the pixel count comes from the header and is checked before decoding
(a 726 KB PNG of 13,300 x 13,300 took 2.8 GB to decode), and JPEGs are decoded by
libjpeg-turbo through simplejpeg with strict=True, so "premature end of data segment" and
"corrupt JPEG data" warnings are errors (skips) rather than grey or shifted patches: Pillow
drops those warnings and offers no way to see them (python-pillow/Pillow#9106). Strict
decoding at Pillow's draft scale gives exactly Pillow's pixels (all 500 images of
imagenet-kaggle-mini, greyscale included), so shards are unchanged by it. CMYK/YCCK JPEGs
are checked strictly, then decoded by Pillow (which undoes Adobe's inverted CMYK).
"""
from __future__ import annotations

import io
import warnings
from importlib import metadata

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from .limits import DEFAULT_MAX_PIXELS, RESAMPLERS

# What "this input is not a usable image" raises, as opposed to a bug: Pillow raises OSError
# for truncated data and UnidentifiedImageError (an OSError) for unknown formats, SyntaxError or
# ValueError from some plugins on corrupt headers, DecompressionBombError; simplejpeg ValueError
# for damaged JPEGs; check_pixels ValueError over --max-pixels. Prep skips such an input, predict
# names it; both catch exactly these.
BAD_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
JPEG_MAGIC = b"\xff\xd8\xff"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
RESAMPLE = dict(zip(RESAMPLERS, (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)))
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
                      f"are the same, resizing is ~2x slower (README, 'Install')", stacklevel=2)
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


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ValueError(f"image of {width}x{height} = {width * height / 1e6:.0f} Mpx exceeds --max-pixels "
                         f"{max_pixels / 1e6:g} Mpx (raise it to accept such images)")


def draft_scale(width: int, height: int, size: int) -> int:
    """Pillow's draft rule: the largest of 8, 4, 2, 1 that keeps both sides >= size."""
    scale = min(width // size, height // size)
    return next((s for s in (8, 4, 2, 1) if scale >= s), 1)


def open_jpeg(data: bytes, size: int, max_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    check_pixels(width, height, max_pixels)
    if colorspace in ("CMYK", "YCCK"):
        simplejpeg.decode_jpeg(data, colorspace="CMYK", strict=True, min_width=1, min_height=1)  # damage check
        return open_with_pillow(data, size, max_pixels)
    s = draft_scale(width, height, size)
    rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, min_width=-(-width // s),
                                 min_height=-(-height // s))
    return Image.fromarray(rgb, "RGB"), (width, height)


def open_with_pillow(data: bytes, size: int, max_pixels: int) -> tuple[Image.Image, tuple[int, int]]:
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:  # its message names a BytesIO's address: not reproducible
        raise ValueError(f"not an image format Pillow reads (file starts with {data[:8]!r})") from None
    original = img.size
    check_pixels(*original, max_pixels)  # from the header, before any pixel is decoded
    if img.format == "JPEG":
        img.draft("RGB", (size, size))  # largest DCT scale-down keeping both sides >= size
    img.load()  # decode now so truncated files fail here, naming this input
    return convert_to_rgb(img), original


def open_image(data: bytes, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, tuple[int, int]]:
    """Decodes an image file's bytes as RGB; returns it with the original (width, height).
    Raises ValueError/OSError for damaged, oversized or unknown inputs (a skip, not a crash)."""
    Image.MAX_IMAGE_PIXELS = None  # check_pixels decides, from the header, before Pillow decodes
    if data.startswith(JPEG_MAGIC):
        return open_jpeg(data, size, max_pixels)
    return open_with_pillow(data, size, max_pixels)


def decode_patch(data: bytes) -> np.ndarray:
    """A stored patch (or any RGB JPEG) as uint8 H x W x 3, exactly as training decodes it:
    libjpeg-turbo through simplejpeg, strict (damage is a ValueError), default DCT and
    upsampling. `alexnet-prep stats` uses this too, so the statistics are those of the pixels
    the network sees."""
    return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)


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
    """The stored patch: pixels only. Pillow would copy the source's JPEG comment and dpi
    (carried in `info` through resize) into the patch; a shard keeps no source metadata, and
    its bytes do not depend on which decoder read the source."""
    bare = img.copy()
    bare.info = {}
    buf = io.BytesIO()
    bare.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def image_to_patch(data: bytes, size: int, resample: str = "bilinear",
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, tuple[int, int]]:
    """An image file's bytes -> the size x size RGB patch prep stores (§2), and the original size."""
    img, original = open_image(data, size, max_pixels)
    return resize_centre_crop(img, size, resample), original

"""Image files as the App shows them: upright and in 8-bit RGB."""

import numpy as np
from PIL import Image, ImageOps

# Modes of one channel deeper than 8 bits (16-bit PNGs open as "I;16*" or
# "I"), and the largest value of each
_DEEP = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535}


def to_rgb(img):
    """An RGB :class:`PIL.Image.Image` of ``img`` as a viewer shows it:
    transparency over white, and 16-bit pixels scaled to 8 bits over their
    full range (``convert("RGB")`` would clip them at 255)."""
    if img.mode in ("RGBA", "LA", "PA") or (
        img.mode == "P" and "transparency" in img.info
    ):
        img = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    if img.mode in _DEEP:
        arr = np.asarray(img, dtype=np.float64)
        top = _DEEP[img.mode] if arr.max() <= _DEEP[img.mode] else arr.max()
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return Image.fromarray(
            ((arr - lo) * scale).astype(np.uint8), "L"
        ).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_rgb(path):
    """Reads an image file as an upright RGB image (see :func:`to_rgb`).

    Raises:
        OSError: if the file is missing, unreadable, truncated or not an
            image
    """
    with Image.open(path) as img:
        return to_rgb(ImageOps.exif_transpose(img))

"""8-bit PNG slices of the PCLT20K layout: resize, atomic write, read."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from igtv.io import write_bytes_atomic


def resize_slice(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Resize a 2D float slice to ``size`` x ``size`` (bilinear, or nearest for masks)."""
    if img.shape == (size, size):
        return img
    from PIL import Image

    mode = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((size, size), mode))


def save_png(path: Path, img_u8: np.ndarray) -> None:
    """Write a uint8 slice as PNG, atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img_u8).save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def load_png(path: Path) -> np.ndarray:
    """A PNG as a uint8 grey array; an unreadable file is an error naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read PNG ({exc})") from exc

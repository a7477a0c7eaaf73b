"""One file → a decoded RGB image, or the reason it is not a usable one.

Only regular files are ever opened (not_regular_reason), images past PIL's pixel limit are
refused (refuse_decompression_bombs), and any PIL mode is converted to 8-bit RGB (to_rgb).
"""

from __future__ import annotations

import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps

from hymtl import display_path


def refuse_decompression_bombs() -> None:
    """An image past PIL's pixel limit (~89 Mpx) is a decompression bomb or at least no training
    photo: PIL only warns; make that warning an error (process-wide, idempotent), so scans skip
    the file and name it. Called by every scan before it opens a file."""
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: 16-bit and 32-bit grey are rescaled rather than clipped, and
    palette images with transparency go through RGBA (PIL warns otherwise)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        image = Image.fromarray(np.clip(pixels / top * 255.0, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        span = max(float(pixels.max() - pixels.min()), 1e-12)
        image = Image.fromarray(((pixels - pixels.min()) / span * 255).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode a file to an upright RGB image (EXIF rotation applied, any mode converted)."""
    with Image.open(path) as image:
        return to_rgb(ImageOps.exif_transpose(image))


FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def not_regular_reason(path: str) -> str | None:
    """Why `path` must not be opened as an image, from os.stat alone (symlinks resolved), or
    None for a regular file. Opening a FIFO blocks until a writer comes (in a scan thread, where
    not even Ctrl-C reaches it), /dev/zero never ends, and opening some devices acts on them:
    only regular files are ever opened. A path that cannot be stat'ed (a broken symlink, a file
    deleted meanwhile) is None too: the decode that follows names it as undecodable."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    kind = next((kind for test, kind in FILE_KINDS if test(mode)), "a special file")
    if os.path.islink(path):
        kind = f"a symlink to {kind}, {display_path(os.path.realpath(path))}"
    return f"not a regular file ({kind})"


def check_image(path: str, min_colors: int) -> tuple[str | None, Image.Image | None]:
    """(None, decoded image) if `path` is a usable photo, else (the reason it is not, None).
    Only regular files are opened (not_regular_reason)."""
    reason = not_regular_reason(path)
    if reason:
        return reason, None
    try:
        image = open_rgb(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return f"too large, refused by the decompression-bomb guard ({error})", None
    except Exception as error:  # PIL raises many types for broken files; all mean "unusable"
        return f"cannot be decoded ({type(error).__name__}: {error})".replace("\n", " "), None
    if min_colors > 0 and image.getcolors(maxcolors=min_colors - 1) is not None:
        return f"fewer than {min_colors} colours, a placeholder rather than a photo", None
    return None, image

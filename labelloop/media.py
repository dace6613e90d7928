"""Decode image files into 8-bit RGB or grayscale Pillow images and NumPy arrays.

Every image mode that Pillow opens is reduced to 8 bits per channel. 16-bit and 32-bit
integer images are scaled (not clipped) to 0..255, and transparent pixels are
composited on white. The EXIF orientation is applied, so pixels are in display order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from labelloop.errors import ConfigError, MediaError

logger = logging.getLogger(__name__)

#: Output modes that `load_image` accepts.
OUTPUT_MODES = ("RGB", "L")

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_UINT16_MAX = 65535


def load_image(path: Path, *, mode: str = "RGB") -> Image.Image:
    """Decode an image file into an 8-bit image in display orientation.

    Parameters
    ----------
    path : Path
        Image file in any format Pillow reads (PNG, JPEG, GIF, TIFF, BMP, WebP...).
        Only the first frame of an animated or multi-page file is read.
    mode : {"RGB", "L"}, default "RGB"
        Output mode: 8-bit color or 8-bit grayscale.

    Returns
    -------
    PIL.Image.Image
        A fully loaded image in ``mode``, with no open file handle.

    Raises
    ------
    ConfigError
        If ``mode`` is not one of `OUTPUT_MODES`.
    MediaError
        If the file is missing, not an image, truncated, too large for Pillow's
        decompression-bomb limit, or in a mode that cannot be converted.
    """
    if mode not in OUTPUT_MODES:
        raise ConfigError(
            f"image mode must be one of {', '.join(OUTPUT_MODES)}, got {mode!r}"
        )
    path = Path(path)

    try:
        with Image.open(path) as opened:
            # load() decodes all pixel data, so truncated files fail here.
            opened.load()
            transposed = ImageOps.exif_transpose(opened)
    except FileNotFoundError:
        raise MediaError(
            f"image file {str(path)!r} not found; check the path in the manifest"
        ) from None
    except UnidentifiedImageError:
        raise MediaError(
            f"cannot decode {str(path)!r}: not an image format that Pillow reads; "
            "convert it to PNG or JPEG"
        ) from None
    except Image.DecompressionBombError as exc:
        raise MediaError(
            f"cannot decode {str(path)!r}: {exc}; downscale the image or raise "
            "PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow raises OSError for truncated data, SyntaxError and ValueError for
        # corrupt headers, and EOFError for files that end inside a header.
        raise MediaError(
            f"cannot decode {str(path)!r}: {exc}; the file is truncated or corrupt, "
            "so re-export or re-download it"
        ) from None

    try:
        return _convert(transposed, mode)
    except ValueError as exc:
        raise MediaError(
            f"cannot convert {str(path)!r} from mode {transposed.mode} to {mode}: "
            f"{exc}; save it as an RGB or grayscale image"
        ) from None


def image_to_array(img: Image.Image) -> np.ndarray:
    """Convert a Pillow image into an 8-bit RGB array.

    Parameters
    ----------
    img : PIL.Image.Image
        Image in any mode. Non-RGB modes are converted as in `load_image`.

    Returns
    -------
    numpy.ndarray
        Array of shape (height, width, 3) and dtype uint8.

    Raises
    ------
    MediaError
        If the image's mode cannot be converted to RGB.
    """
    try:
        rgb = _convert(img, "RGB")
    except ValueError as exc:
        raise MediaError(
            f"cannot convert a {img.mode} image to RGB: {exc}; save it as an RGB or "
            "grayscale image"
        ) from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def _convert(img: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow mode to 8-bit ``mode`` ("RGB" or "L")."""
    if img.mode == "P":
        # Palette images may carry a transparent index. RGBA keeps it.
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif img.mode.startswith("I") or img.mode == "F":
        img = _to_uint8_gray(img)
    elif img.mode in ("RGB", "L") and "transparency" in img.info:
        # A tRNS chunk gives RGB and L images one transparent color.
        img = img.convert("RGBA" if img.mode == "RGB" else "LA")

    if img.mode in _ALPHA_MODES:
        img = _composite_on_white(img)

    if img.mode == mode:
        return img.copy()
    return img.convert(mode)


def _to_uint8_gray(img: Image.Image) -> Image.Image:
    """Scale an integer or float single-channel image to 8-bit "L"."""
    values = np.asarray(img)
    if img.mode.startswith("I;16"):
        scaled = values.astype(np.float64) * (255.0 / _UINT16_MAX)
    elif img.mode == "F":
        scaled = _scale_float(values.astype(np.float64))
    else:
        # Mode "I" is 32-bit signed, but 16-bit PNG and TIFF files often decode to
        # it, so values within 0..65535 are scaled as 16-bit samples.
        # NOTE: values outside 0..65535 are min-max scaled, so such images lose
        # their absolute levels.
        values = values.astype(np.float64)
        if values.size and (values.min() < 0 or values.max() > _UINT16_MAX):
            scaled = _min_max(values)
        else:
            scaled = values * (255.0 / _UINT16_MAX)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _scale_float(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    if finite.size == 0:
        return np.zeros_like(values)
    if finite.min() >= 0.0 and finite.max() <= 1.0:
        return values * 255.0
    if finite.min() >= 0.0 and finite.max() <= 255.0:
        return values
    return _min_max(values)


def _min_max(values: np.ndarray) -> np.ndarray:
    low = float(values.min())
    high = float(values.max())
    if high == low:
        return np.zeros_like(values)
    return (values - low) * (255.0 / (high - low))


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")

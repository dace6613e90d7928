"""Tests of image decoding into 8-bit RGB and grayscale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelloop.errors import ConfigError, MediaError
from labelloop.media import image_to_array, load_image

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


def test_load_image_grayscale_to_rgb(tmp_path: Path) -> None:
    values = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(values).save(path)

    rgb = load_image(path)
    gray = load_image(path, mode="L")

    assert rgb.mode == "RGB"
    assert rgb.size == (2, 2)
    for channel in range(3):
        np.testing.assert_array_equal(_pixels(rgb)[:, :, channel], values)
    assert gray.mode == "L"
    np.testing.assert_array_equal(_pixels(gray), values)


def test_load_image_16bit_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768], [65535, 1000, 65278]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as opened:
        # Pillow 13 decodes 16-bit grayscale PNG as "I;16". Older releases gave "I".
        assert opened.mode in ("I;16", "I")

    gray = load_image(path, mode="L")

    expected = np.array([[0, 1, 128], [255, 4, 254]], dtype=np.uint8)
    np.testing.assert_array_equal(_pixels(gray), expected)
    rgb = load_image(path)
    np.testing.assert_array_equal(_pixels(rgb)[:, :, 1], expected)


def test_load_image_32bit_int_scaled(tmp_path: Path) -> None:
    values = np.array([[0, 65535], [32768, 257]], dtype=np.int32)
    path = tmp_path / "int32.tif"
    Image.fromarray(values).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "I"

    gray = load_image(path, mode="L")

    np.testing.assert_array_equal(_pixels(gray), [[0, 255], [128, 1]])


def test_load_image_int_out_of_range(tmp_path: Path) -> None:
    values = np.array([[-100000, 0], [100000, 300000]], dtype=np.int32)
    path = tmp_path / "wide.tif"
    Image.fromarray(values).save(path)

    gray = _pixels(load_image(path, mode="L"))

    # Min-max scaling: -100000 -> 0, 0 -> 64, 100000 -> 128, 300000 -> 255.
    np.testing.assert_array_equal(gray, [[0, 64], [128, 255]])


def test_load_image_float_unit_range(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)

    gray = load_image(path, mode="L")

    np.testing.assert_array_equal(_pixels(gray), [[0, 128], [255, 64]])


def test_load_image_palette_transparency(tmp_path: Path) -> None:
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([*RED, *BLUE] + [0, 0, 0] * 254)
    palette_image.putpixel((0, 0), 0)
    palette_image.putpixel((1, 0), 1)
    path = tmp_path / "palette.png"
    palette_image.save(path, transparency=0)
    with Image.open(path) as opened:
        assert opened.mode == "P"
        assert opened.info["transparency"] == 0

    rgb = load_image(path)

    assert rgb.getpixel((0, 0)) == WHITE
    assert rgb.getpixel((1, 0)) == BLUE


def test_load_image_palette_gif_transparency(tmp_path: Path) -> None:
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([*RED, *BLUE] + [0, 0, 0] * 254)
    palette_image.putpixel((0, 0), 1)
    palette_image.putpixel((1, 0), 0)
    path = tmp_path / "palette.gif"
    palette_image.save(path, transparency=0)

    rgb = load_image(path)

    assert rgb.getpixel((0, 0)) == BLUE
    assert rgb.getpixel((1, 0)) == WHITE


def test_load_image_rgba_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 255, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    path = tmp_path / "alpha.png"
    rgba.save(path)

    rgb = load_image(path)

    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == WHITE
    assert rgb.getpixel((1, 0)) == BLUE
    half = rgb.getpixel((2, 0))
    assert all(126 <= value <= 128 for value in half)


def test_load_image_gray_alpha_on_white(tmp_path: Path) -> None:
    gray_alpha = Image.new("LA", (2, 1))
    gray_alpha.putpixel((0, 0), (0, 0))
    gray_alpha.putpixel((1, 0), (0, 255))
    path = tmp_path / "la.png"
    gray_alpha.save(path)

    gray = load_image(path, mode="L")

    assert gray.mode == "L"
    assert gray.getpixel((0, 0)) == 255
    assert gray.getpixel((1, 0)) == 0


def test_load_image_cmyk_to_rgb(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (3, 1))
    cmyk.putpixel((0, 0), (0, 0, 0, 0))
    cmyk.putpixel((1, 0), (255, 0, 0, 0))
    cmyk.putpixel((2, 0), (0, 0, 0, 255))
    path = tmp_path / "cmyk.tif"
    cmyk.save(path)

    rgb = load_image(path)

    assert rgb.getpixel((0, 0)) == WHITE
    assert rgb.getpixel((1, 0)) == (0, 255, 255)
    assert rgb.getpixel((2, 0)) == (0, 0, 0)


def test_load_image_one_bit(tmp_path: Path) -> None:
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    path = tmp_path / "bilevel.png"
    bilevel.save(path)
    with Image.open(path) as opened:
        assert opened.mode == "1"

    rgb = load_image(path)

    assert rgb.getpixel((0, 0)) == (0, 0, 0)
    assert rgb.getpixel((1, 0)) == WHITE


def test_load_image_exif_orientation_rotated(tmp_path: Path) -> None:
    # Stored 16 wide and 8 high: left half red, right half blue.
    stored = Image.new("RGB", (16, 8), BLUE)
    stored.paste(Image.new("RGB", (8, 8), RED), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)

    displayed = load_image(path)

    # Clockwise rotation puts the stored left column at the top.
    assert displayed.size == (8, 16)
    pixels = _pixels(displayed).astype(int)
    top = pixels[:6, :, :].mean(axis=(0, 1))
    bottom = pixels[10:, :, :].mean(axis=(0, 1))
    assert top[0] > 200
    assert top[2] < 50
    assert bottom[2] > 200
    assert bottom[0] < 50


def test_load_image_truncated_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    full = tmp_path / "full.jpg"
    Image.fromarray(noise).save(full)
    truncated = tmp_path / "truncated.jpg"
    data = full.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    with pytest.raises(MediaError, match="truncated") as caught:
        load_image(truncated)
    assert "truncated.jpg" in str(caught.value)


def test_load_image_text_file_rejected(tmp_path: Path) -> None:
    fake = tmp_path / "notes.png"
    fake.write_text("this is not a PNG file\n", encoding="utf-8")

    with pytest.raises(MediaError, match="notes.png") as caught:
        load_image(fake)
    assert "convert it to PNG or JPEG" in str(caught.value)


def test_load_image_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="not found"):
        load_image(tmp_path / "absent.png")


def test_load_image_invalid_mode(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.new("L", (1, 1)).save(path)

    with pytest.raises(ConfigError, match="'CMYK'"):
        load_image(path, mode="CMYK")


def test_load_image_closes_file(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.new("L", (4, 4), 9).save(path)

    img = load_image(path)
    path.unlink()

    assert img.getpixel((3, 3)) == (9, 9, 9)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16", "P", "1", "CMYK"])
def test_image_to_array_shape_dtype(mode: str) -> None:
    img = Image.new(mode, (5, 3))

    array = image_to_array(img)

    assert array.shape == (3, 5, 3)
    assert array.dtype == np.uint8


def test_image_to_array_16bit_values() -> None:
    img = Image.fromarray(np.array([[65535, 0]], dtype=np.uint16))

    array = image_to_array(img)

    np.testing.assert_array_equal(array[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(array[0, 1], [0, 0, 0])


def test_image_to_array_writable_copy() -> None:
    img = Image.new("RGB", (2, 2), RED)

    array = image_to_array(img)
    array[0, 0] = 0

    assert img.getpixel((0, 0)) == RED

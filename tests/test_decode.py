"""handler.serving.decode on real photos in every form a frame can arrive in, and on hostile bodies."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image
from serving_helpers import (
    bomb_png,
    encode,
    exif_rotated_jpeg,
    photo,
    png16_grey,
    png16_rgb,
    with_alpha,
)

from handler.serving.decode import ALPHA_BACKGROUND, DecodeLimits, check_content_type, decode_image
from handler.serving.errors import (
    BadImageError,
    EmptyBodyError,
    ImageTooLargeError,
    PayloadTooLargeError,
    RequestError,
    UnsupportedContentTypeError,
)


@pytest.fixture(scope="module")
def face(faces_dir) -> Image.Image:
    return photo(faces_dir / "two_people.jpg", width=320)


@pytest.fixture(scope="module")
def rgb(face) -> np.ndarray:
    return np.asarray(face)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_real_jpeg_decodes_to_the_pixels_pillow_shows(faces_dir):
    path = faces_dir / "obama_and_biden.jpg"
    out = decode_image(path.read_bytes(), "image/jpeg", DecodeLimits(max_bytes=50 * 2**20))
    with Image.open(path) as im:
        expected = np.asarray(im.convert("RGB"))
    assert out.dtype == np.uint8 and out.shape == expected.shape and out.flags.c_contiguous
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_gives_the_upright_frame(face, rgb, orientation):
    body = exif_rotated_jpeg(face, orientation)
    with Image.open(io.BytesIO(body)) as stored:
        stored_rgb = np.asarray(stored.convert("RGB"))
    out = decode_image(body, "image/jpeg")
    assert out.shape == rgb.shape  # 5-8 swap width and height when stored
    assert mean_abs(out, rgb) < 3  # JPEG noise only
    if stored_rgb.shape == rgb.shape:
        assert mean_abs(stored_rgb, rgb) > 10  # the stored pixels really were turned


def test_16_bit_colour_png_keeps_its_colours(rgb):
    assert np.array_equal(decode_image(png16_rgb(rgb), "image/png"), rgb)


def test_16_bit_greyscale_png_is_scaled_not_clipped(face):
    grey = np.asarray(face.convert("L"))
    out = decode_image(png16_grey(grey), "image/png")
    assert np.array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


def test_32_bit_integer_greyscale_tiff_with_16_bit_values_is_scaled(face):
    grey = np.asarray(face.convert("L"))
    body = encode(Image.fromarray(grey.astype(np.int32) * 257, mode="I"), "TIFF")
    assert np.abs(decode_image(body, "image/tiff")[:, :, 0].astype(int) - grey).max() <= 1


def test_float_tiff_in_0_1_is_scaled(face):
    grey = np.asarray(face.convert("L"))
    body = encode(Image.fromarray(grey.astype(np.float32) / 255.0, mode="F"), "TIFF")
    assert np.abs(decode_image(body, "image/tiff")[:, :, 0].astype(int) - grey).max() <= 1


@pytest.mark.parametrize("mode", ["L", "1", "P"])
def test_greyscale_bilevel_and_palette_png_become_their_rgb(face, mode):
    image = face.convert(mode) if mode != "P" else face.quantize(64)
    out = decode_image(encode(image, "PNG"), "image/png")
    assert np.array_equal(out, np.asarray(image.convert("RGB")))


def test_greyscale_jpeg_gives_three_equal_channels(face):
    out = decode_image(encode(face.convert("L"), "JPEG", quality=95), "image/jpeg")
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    assert mean_abs(out[:, :, 0], np.asarray(face.convert("L"))) < 2


def test_cmyk_jpeg_comes_back_as_the_same_colours(face, rgb):
    out = decode_image(encode(face.convert("CMYK"), "JPEG", quality=95), "image/jpeg")
    assert out.shape == rgb.shape and mean_abs(out, rgb) < 4


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_alpha_is_composited_on_the_documented_background(face, rgb, fmt):
    rgba = with_alpha(face)
    params = {"lossless": True} if fmt == "WEBP" else {}
    out = decode_image(encode(rgba, fmt, **params), "application/x-image").astype(int)
    alpha = np.asarray(rgba)[:, :, 3]
    assert np.array_equal(out[alpha == 255], rgb[alpha == 255])
    assert np.all(out[alpha == 0] == ALPHA_BACKGROUND)
    half = (rgb[alpha == 128].astype(int) * 128 + np.array(ALPHA_BACKGROUND) * 127) / 255
    assert np.abs(out[alpha == 128] - half).max() <= 2


def test_palette_transparency_is_composited(face):
    pal = face.quantize(16)
    index = int(np.asarray(pal)[0, 0])
    pal.info["transparency"] = index
    out = decode_image(encode(pal, "PNG", transparency=index), "image/png")
    assert np.all(out[np.asarray(pal) == index] == ALPHA_BACKGROUND)


def test_la_png_is_composited(face):
    la = with_alpha(face.convert("L")).convert("LA")
    out = decode_image(encode(la, "PNG"), "image/png")
    assert np.all(out[np.asarray(la)[:, :, 1] == 0] == ALPHA_BACKGROUND)


def test_multi_frame_gif_gives_its_first_frame(face):
    frames = [face.quantize(64), face.transpose(Image.Transpose.FLIP_LEFT_RIGHT).quantize(64)]
    body = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert np.array_equal(decode_image(body, "image/gif"), np.asarray(frames[0].convert("RGB")))


@pytest.mark.parametrize("content_type", [None, "", "application/x-image", "application/octet-stream",
                                          "image/jpeg", "IMAGE/JPEG; charset=binary", "image/png"])
def test_accepted_content_types_sniff_the_bytes(face, content_type):
    assert decode_image(encode(face, "JPEG"), content_type).shape == (face.height, face.width, 3)


def _truncated_jpeg(face: Image.Image) -> bytes:
    body = encode(face, "JPEG", quality=95)
    return body[: len(body) // 2]


def _eps(face: Image.Image) -> bytes:
    return encode(face, "EPS")  # Pillow would hand EPS to Ghostscript: never decoded here


def _pickle(_face: Image.Image) -> bytes:
    return pickle.dumps(np.zeros((4, 4, 3), np.uint8))


def _npy(_face: Image.Image) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 4, 3), np.uint8))
    return buf.getvalue()


@pytest.mark.parametrize("make, content_type, error, status, words", [
    (lambda f: b"", "image/jpeg", EmptyBodyError, 400, "empty"),
    (lambda f: b"this is not an image", "image/jpeg", BadImageError, 400, "not an image"),
    (_truncated_jpeg, "image/jpeg", BadImageError, 400, "truncated"),
    (_eps, "application/x-image", BadImageError, 400, "not an image"),
    (_pickle, "application/x-image", BadImageError, 400, "not an image"),
    (_npy, "application/octet-stream", BadImageError, 400, "not an image"),
    (lambda f: encode(f, "JPEG"), "text/plain", UnsupportedContentTypeError, 415, "text/plain"),
    (lambda f: encode(f, "JPEG"), "application/json", UnsupportedContentTypeError, 415, "application/json"),
    (lambda f: b"<svg/>", "image/svg+xml", UnsupportedContentTypeError, 415, "image/svg+xml"),
    (lambda f: encode(f, "JPEG"), "application/x-npy", UnsupportedContentTypeError, 415, "application/x-npy"),
])
def test_bad_bodies_get_their_status_and_a_message(face, make, content_type, error, status, words):
    with pytest.raises(error) as caught:
        decode_image(make(face), content_type)
    assert caught.value.status_code == status
    assert words in caught.value.message


def test_never_unpickles_a_body(tmp_path, face):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    with pytest.raises(RequestError):
        decode_image(pickle.dumps(Payload()), "application/octet-stream")
    assert not marker.exists()


def test_body_over_the_limit_is_refused_before_it_is_read_as_an_image():
    with pytest.raises(PayloadTooLargeError) as caught:  # garbage, yet 413 rather than 400
        decode_image(b"x" * 2000, "image/png", DecodeLimits(max_bytes=1000))
    assert caught.value.status_code == 413 and "2,000 bytes" in caught.value.message


def test_image_over_the_pixel_limit_is_refused(face):
    limits = DecodeLimits(max_pixels=face.width * face.height - 1)
    with pytest.raises(ImageTooLargeError) as caught:
        decode_image(encode(face, "PNG"), "image/png", limits)
    assert caught.value.status_code == 413 and f"{face.width}x{face.height}" in caught.value.message
    assert decode_image(encode(face, "PNG"), "image/png", DecodeLimits(max_pixels=face.width * face.height)).size


@pytest.mark.parametrize("side", [7000, 11000, 30000])  # ours, Pillow's warning and its error thresholds
def test_decompression_bombs_are_refused_from_their_header(side):
    body = bomb_png(side)
    assert len(body) < 200_000
    with pytest.raises(ImageTooLargeError) as caught:
        decode_image(body, "image/png")
    assert caught.value.status_code == 413 and "pixels" in caught.value.message


def test_a_raised_pixel_limit_is_ours_not_pillows():
    """FACE_BLUR_MAX_PIXELS above Pillow's own bomb threshold (89 M pixels): an image under our limit
    is not refused for Pillow's sake, one over it still is, before any pixel is decoded."""
    from handler.serving.decode import _open

    body = bomb_png(11000)  # 121 M pixels: over Pillow's warning threshold, under its error one
    image = _open(body, DecodeLimits(max_bytes=10**9, max_pixels=200_000_000))
    assert image.size == (11000, 11000)
    with pytest.raises(ImageTooLargeError, match="FACE_BLUR_MAX_PIXELS"):
        _open(body, DecodeLimits(max_bytes=10**9, max_pixels=100_000_000))


@pytest.mark.parametrize("content_type, expected", [
    (None, "application/x-image"), ("image/PNG ; q=1", "image/png"), ("application/x-image", "application/x-image"),
])
def test_content_type_is_normalised(content_type, expected):
    assert check_content_type(content_type) == expected

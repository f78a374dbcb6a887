"""Per-frame face augmentation: ranges, each stage against NumPy, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from emorec.augment import (
    BRIGHTNESS_MAX_DELTA,
    SATURATION_RANGE,
    adjust_saturation,
    apply_augment,
    augment_faces,
    draw_augment_params,
    resize_faces,
    resize_size,
    transform_landmarks,
)
from emorec.schema import DEFAULT_FACE_SIZE, NUM_LANDMARKS

SIZE = 24  # resized to round(24 * 110 / 96) = round(27.5) = 28


def _faces(n, size=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def _np_resize(images, out):
    """Bilinear resize with half-pixel centres, written out by hand."""
    size = images.shape[1]
    src = np.clip((np.arange(out) + 0.5) * size / out - 0.5, 0, size - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, size - 1)
    w = (src - lo).astype(np.float32)
    rows = images[:, lo] * (1 - w)[None, :, None, None] + images[:, hi] * w[None, :, None, None]
    return rows[:, :, lo] * (1 - w)[None, None, :, None] + rows[:, :, hi] * w[None, None, :, None]


def _np_saturation(images, factors):
    """Saturation scaling through an explicit RGB -> HSV -> RGB round trip (hexcone model)."""
    r, g, b = np.moveaxis(images.astype(np.float64), -1, 0)
    value = np.maximum(np.maximum(r, g), b)
    chroma = value - np.minimum(np.minimum(r, g), b)
    sat = np.divide(chroma, value, out=np.zeros_like(value), where=value > 0)
    safe = np.where(chroma > 0, chroma, 1)
    hue = np.where(value == r, (g - b) / safe, np.where(value == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = np.where(chroma > 0, hue % 6, 0)
    sat = np.clip(sat * factors[:, None, None], 0, 1)
    c = value * sat
    x = c * (1 - np.abs(hue % 2 - 1))
    sector = np.floor(hue).astype(int) % 6
    zero = np.zeros_like(c)
    table = [(c, x, zero), (x, c, zero), (zero, c, x), (zero, x, c), (x, zero, c), (c, zero, x)]
    out = np.zeros(images.shape, np.float64)
    for k, channels in enumerate(table):
        out[sector == k] = np.stack(channels, axis=-1)[sector == k]
    return (out + (value - c)[..., None]).astype(np.float32)


def test_resize_size_scales_with_face_size():
    assert resize_size(DEFAULT_FACE_SIZE) == 110
    assert resize_size(48) == 55
    assert resize_size(SIZE) == 28


def test_draws_are_in_range_per_frame_and_cover_the_crop_margin():
    params = {k: v.numpy() for k, v in draw_augment_params([1, 2], 4000, SIZE).items()}
    margin = resize_size(SIZE) - SIZE
    for key in ("offset_y", "offset_x"):
        assert params[key].min() == 0 and params[key].max() == margin
        assert len(np.unique(params[key])) == margin + 1
    assert SATURATION_RANGE[0] <= params["saturation"].min() < 0.51
    assert 1.49 < params["saturation"].max() < SATURATION_RANGE[1]
    assert -BRIGHTNESS_MAX_DELTA <= params["brightness"].min() < -0.99 * BRIGHTNESS_MAX_DELTA
    assert 0.99 * BRIGHTNESS_MAX_DELTA < params["brightness"].max() < BRIGHTNESS_MAX_DELTA
    # Per-frame independence: the draws of neighbouring frames differ.
    assert len(np.unique(params["saturation"])) > 3990
    assert abs(np.corrcoef(params["brightness"][:-1], params["brightness"][1:])[0, 1]) < 0.1


def test_resize_matches_numpy_bilinear():
    faces = _faces(3)
    np.testing.assert_allclose(resize_faces(faces, SIZE).numpy(), _np_resize(faces, 28), atol=1e-5)


def test_crop_only_equals_a_window_of_the_resized_face():
    faces = _faces(5)
    params = {
        "offset_y": tf.constant([0, 4, 2, 1, 3]),
        "offset_x": tf.constant([4, 0, 2, 3, 1]),
        "saturation": tf.ones([5]),
        "brightness": tf.zeros([5]),
    }
    out = apply_augment(faces, params, SIZE).numpy()
    resized = resize_faces(faces, SIZE).numpy()
    for i in range(5):
        oy, ox = int(params["offset_y"][i]), int(params["offset_x"][i])
        window = np.clip(resized[i, oy:oy + SIZE, ox:ox + SIZE], 0, 1)
        np.testing.assert_allclose(out[i], window, atol=2e-6)


def test_saturation_matches_tf_image_per_frame_and_numpy():
    faces = _faces(4)
    factors = np.array([0.5, 0.8, 1.2, 1.5], np.float32)
    ours = adjust_saturation(faces, factors).numpy()
    for i in range(4):
        ref = tf.image.adjust_saturation(faces[i], factors[i]).numpy()
        np.testing.assert_allclose(ours[i], ref, atol=1e-5)
    np.testing.assert_allclose(ours, _np_saturation(faces, factors), atol=1e-5)


def test_full_chain_matches_numpy_with_the_same_draws():
    faces = _faces(6, seed=3)
    params = draw_augment_params([7, 11], 6, SIZE)
    out = apply_augment(faces, params, SIZE).numpy()
    p = {k: v.numpy() for k, v in params.items()}
    resized = _np_resize(faces, 28)
    crops = np.stack([
        resized[i, p["offset_y"][i]:p["offset_y"][i] + SIZE, p["offset_x"][i]:p["offset_x"][i] + SIZE]
        for i in range(6)
    ])
    expected = np.clip(_np_saturation(crops, p["saturation"]) + p["brightness"][:, None, None, None], 0, 1)
    np.testing.assert_allclose(out, expected, atol=2e-5)
    # Saturation and brightness really changed the pixels.
    assert np.abs(out - np.clip(crops, 0, 1)).mean() > 0.01


def test_output_is_clipped_to_unit_range():
    white = np.ones((50, SIZE, SIZE, 3), np.float32)
    black = np.zeros((50, SIZE, SIZE, 3), np.float32)
    marks = np.zeros((50, NUM_LANDMARKS, 2), np.float32)
    for faces in (white, black):
        out, _ = augment_faces(faces, marks, [0, 1], SIZE)
        out = out.numpy()
        assert out.min() >= 0.0 and out.max() <= 1.0
    bright, _ = augment_faces(white, marks, [0, 1], SIZE)
    assert bright.numpy().min() < 1.0  # some negative brightness deltas darkened white frames


def test_same_seed_same_output_different_seed_different_output():
    faces = _faces(8)
    marks = np.random.default_rng(0).uniform(0, SIZE, (8, NUM_LANDMARKS, 2)).astype(np.float32)
    a, la = augment_faces(faces, marks, [5, 6], SIZE)
    b, lb = augment_faces(faces, marks, [5, 6], SIZE)
    c, _ = augment_faces(faces, marks, [5, 7], SIZE)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(la.numpy(), lb.numpy())
    assert np.abs(a.numpy() - c.numpy()).max() > 0.05


def test_landmarks_follow_the_crop():
    params = {
        "offset_y": tf.constant([3]), "offset_x": tf.constant([1]),
        "saturation": tf.ones([1]), "brightness": tf.zeros([1]),
    }
    marks = np.array([[[0.0, 0.0], [12.0, 6.0], [24.0, 24.0], [6.0, 18.0], [1.5, 2.5]]], np.float32)
    moved = transform_landmarks(marks, params, SIZE).numpy()
    scale = 28 / 24
    expected = marks * scale - np.array([1.0, 3.0], np.float32)  # (x, y) minus (offset_x, offset_y)
    np.testing.assert_allclose(moved, expected, atol=1e-5)


@pytest.mark.parametrize("size", [DEFAULT_FACE_SIZE, 16])
def test_shapes_are_kept(size):
    faces = _faces(2, size=size)
    out, marks = augment_faces(faces, np.zeros((2, NUM_LANDMARKS, 2), np.float32), [1, 1], size)
    assert out.shape == (2, size, size, 3) and out.dtype == tf.float32
    assert marks.shape == (2, NUM_LANDMARKS, 2)

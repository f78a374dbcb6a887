"""Training-time face augmentation, per frame, as in the original visual network's code.

Each frame, independently of its neighbours (the original pipeline held one
frame per record, so every frame got its own draws): bilinear resize of the
``S x S`` face to ``R x R`` with ``R = round(110 / 96 * S)`` (110 for the
default 96 px faces) -> random ``S x S`` crop -> random saturation factor in
``[0.5, 1.5)`` -> random brightness delta in ``[-32/255, 32/255)`` -> clip to
``[0, 1]``. No flip. Inputs are already scaled to ``[0, 1]`` (evaluation does
only that scaling).

The random draws are separated from their application (:func:`draw_augment_params`
and :func:`apply_augment`) so that tests can replay the same draws, and they are
stateless: the same seed gives the same output on every run and device.
The resize uses TF2's half-pixel-centre bilinear sampling (the 2016 code used
the legacy corner-aligned variant, a shift of under 0.1 px).
"""

from __future__ import annotations

import tensorflow as tf

from emorec.schema import DEFAULT_FACE_SIZE

ORIGINAL_RESIZE = 110  # the original code's resize target for DEFAULT_FACE_SIZE faces
SATURATION_RANGE = (0.5, 1.5)
BRIGHTNESS_MAX_DELTA = 32.0 / 255.0


def resize_size(face_size: int) -> int:
    """Side of the resized face before the random crop (110 for 96 px faces).

    Args:
        face_size: side ``S`` of the square input faces, in pixels.

    Returns:
        ``R = round(S * 110 / 96)``, the side in pixels the faces are resized to.

    >>> resize_size(96), resize_size(48)
    (110, 55)
    """
    return int(round(face_size * ORIGINAL_RESIZE / DEFAULT_FACE_SIZE))


def draw_augment_params(seed, num_frames, face_size: int) -> dict:
    """Draw per-frame crop offsets, saturation factors and brightness deltas from ``seed``.

    Args:
        seed: stateless random seed, a shape ``(2,)`` integer tensor or sequence; the same
            seed gives the same draws on every run and device.
        num_frames: number of frames ``N`` to draw for (int or scalar int tensor).
        face_size: side ``S`` of the square faces, in pixels (fixes the crop margin
            ``R - S``, see :func:`resize_size`).

    Returns:
        ``{"offset_y", "offset_x"}``: ``(N,)`` int32 crop offsets in ``[0, R - S]``;
        ``"saturation"``: ``(N,)`` float32 factors in :data:`SATURATION_RANGE`;
        ``"brightness"``: ``(N,)`` float32 deltas in
        ``[-BRIGHTNESS_MAX_DELTA, BRIGHTNESS_MAX_DELTA)``.
    """
    seeds = tf.random.split(tf.cast(seed, tf.int64), 3)
    margin = resize_size(face_size) - face_size
    offsets = tf.random.stateless_uniform(
        [num_frames, 2], seed=seeds[0], minval=0, maxval=margin + 1, dtype=tf.int32
    )
    saturation = tf.random.stateless_uniform(
        [num_frames], seed=seeds[1], minval=SATURATION_RANGE[0], maxval=SATURATION_RANGE[1]
    )
    brightness = tf.random.stateless_uniform(
        [num_frames], seed=seeds[2], minval=-BRIGHTNESS_MAX_DELTA, maxval=BRIGHTNESS_MAX_DELTA
    )
    return {
        "offset_y": offsets[:, 0],
        "offset_x": offsets[:, 1],
        "saturation": saturation,
        "brightness": brightness,
    }


def resize_faces(images, face_size: int):
    """Bilinear resize of ``(N, S, S, 3)`` faces to ``(N, R, R, 3)``.

    Args:
        images: ``(N, S, S, 3)`` float faces.
        face_size: ``S``, the side of the input faces in pixels.

    Returns:
        The ``(N, R, R, 3)`` float32 tensor, ``R = resize_size(S)`` (half-pixel-centre sampling).
    """
    side = resize_size(face_size)
    return tf.image.resize(images, [side, side], method="bilinear")


def crop_faces(images, offset_y, offset_x, face_size: int):
    """Crop ``S x S`` out of each ``(R, R, 3)`` image at its own offset (exact pixel copy).

    Args:
        images: ``(N, R, R, 3)`` resized faces.
        offset_y: ``(N,)`` int32 top row of each crop.
        offset_x: ``(N,)`` int32 left column of each crop.
        face_size: ``S``, the side of the crop in pixels.

    Returns:
        The ``(N, S, S, 3)`` crops, same dtype as ``images``.
    """
    steps = tf.range(face_size, dtype=tf.int32)
    rows = offset_y[:, None] + steps[None, :]
    cols = offset_x[:, None] + steps[None, :]
    images = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(images, cols, axis=2, batch_dims=1)


def adjust_saturation(images, factors):
    """Scale each image's HSV saturation by its own factor (clamped to [0, 1]), like tf.image.

    With hue and value fixed, every RGB channel sits at ``V - C * k(hue)`` with
    chroma ``C = V * S``, so scaling S to S' maps ``rgb -> V - (V - rgb) * S' / S``.
    This closed form equals the HSV round trip of ``tf.image.adjust_saturation``
    (to float rounding) at a third of the cost.

    Args:
        images: ``(N, H, W, 3)`` float RGB images in ``[0, 1]``.
        factors: ``(N,)`` saturation multipliers, one per image (1 leaves it unchanged).

    Returns:
        The ``(N, H, W, 3)`` float images; grey pixels (zero saturation) stay unchanged.
    """
    value = tf.reduce_max(images, axis=-1, keepdims=True)
    chroma = value - tf.reduce_min(images, axis=-1, keepdims=True)
    sat = tf.math.divide_no_nan(chroma, value)
    new_sat = tf.clip_by_value(sat * factors[:, None, None, None], 0.0, 1.0)
    return value - (value - images) * tf.math.divide_no_nan(new_sat, sat)


def apply_augment(images, params: dict, face_size: int):
    """Apply drawn parameters to ``(N, S, S, 3)`` float faces in ``[0, 1]``.

    Resize, crop, saturation, brightness, then clip to ``[0, 1]``.

    Args:
        images: ``(N, S, S, 3)`` float faces in ``[0, 1]``.
        params: the dict of :func:`draw_augment_params` for the same ``N`` and ``S``.
        face_size: ``S``, the side of the faces in pixels.

    Returns:
        The ``(N, S, S, 3)`` float32 augmented faces in ``[0, 1]``.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    images = resize_faces(images, face_size)
    images = crop_faces(images, params["offset_y"], params["offset_x"], face_size)
    images = adjust_saturation(images, params["saturation"])
    images = images + params["brightness"][:, None, None, None]
    return tf.clip_by_value(images, 0.0, 1.0)


def transform_landmarks(landmarks, params: dict, face_size: int):
    """Move ``(N, 5, 2)`` crop-pixel ``(x, y)`` landmarks onto the augmented face.

    Args:
        landmarks: ``(N, 5, 2)`` landmark coordinates ``(x, y)`` in pixels of the ``S x S`` face.
        params: the dict of :func:`draw_augment_params` used for the faces.
        face_size: ``S``, the side of the faces in pixels.

    Returns:
        The ``(N, 5, 2)`` float32 landmarks in pixels of the augmented face
        (scaled by ``R / S``, minus the crop offset).
    """
    scale = resize_size(face_size) / face_size
    offset = tf.cast(tf.stack([params["offset_x"], params["offset_y"]], axis=-1), tf.float32)
    return tf.convert_to_tensor(landmarks, tf.float32) * scale - offset[:, None, :]


def augment_faces(images, landmarks, seed, face_size: int):
    """Augment ``(N, S, S, 3)`` faces in ``[0, 1]`` frame by frame, landmarks alongside.

    Args:
        images: ``(N, S, S, 3)`` float faces in ``[0, 1]``.
        landmarks: ``(N, 5, 2)`` ``(x, y)`` landmarks in pixels of the faces.
        seed: stateless seed, shape ``(2,)`` integers (see :func:`draw_augment_params`).
        face_size: ``S``, the side of the faces in pixels.

    Returns:
        ``(faces, landmarks)``: the ``(N, S, S, 3)`` augmented faces and the ``(N, 5, 2)``
        landmarks moved onto them.
    """
    params = draw_augment_params(seed, tf.shape(images)[0], face_size)
    return apply_augment(images, params, face_size), transform_landmarks(
        landmarks, params, face_size
    )

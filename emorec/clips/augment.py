"""Face augmentation for the clip branches (Pini et al. §4.2): random horizontal flip, crop and zoom.

One draw is a square box inside the face crop and a flip bit. The box's side
is ``1 / z`` of the crop's, with the zoom ``z`` uniform in :data:`ZOOM_RANGE`
(1 to 1.25), and its position is uniform over the places it fits; the box is
resized to the output size (bilinear, ``tf.image.crop_and_resize``) and
mirrored left-right with probability 1/2. Without augmentation the box is the
whole crop, so evaluation only resizes (160 -> 160 is an exact copy,
160 -> 112 for C3D a corner-aligned bilinear resize), the same operation as in
training. The paper gives no ranges; a zoom of at most 1.25 keeps the eyes,
brows and mouth inside the box with the build's 0.15 face margin.

Draws are stateless (a seed tensor of shape ``(2,)``), so the same seed gives
the same output on every run. The audio is not augmented (the paper uses it
"as it is", apart from the choice of the 1 s slice).
"""

from __future__ import annotations

import tensorflow as tf

ZOOM_RANGE = (1.0, 1.25)


def draw_crop_params(seed, count) -> dict:
    """Draw ``count`` crop boxes and flip bits from a stateless ``seed``.

    Args:
        seed: integer tensor of shape ``(2,)``.
        count: number of draws (scalar int).

    Returns:
        ``boxes (count, 4)`` float32 ``[y0, x0, y1, x1]`` in [0, 1] (crop_and_resize's
        normalised coordinates) and ``flip (count,)`` bool.
    """
    seeds = tf.random.split(tf.cast(seed, tf.int64), 3)
    zoom = tf.random.stateless_uniform([count], seed=seeds[0], minval=ZOOM_RANGE[0], maxval=ZOOM_RANGE[1])
    side = 1.0 / zoom
    corner = tf.random.stateless_uniform([count, 2], seed=seeds[1]) * (1.0 - side)[:, None]
    boxes = tf.concat([corner, corner + side[:, None]], axis=1)
    flip = tf.random.stateless_uniform([count], seed=seeds[2]) < 0.5
    return {"boxes": boxes, "flip": flip}


def identity_params(count) -> dict:
    """The draws of no augmentation: whole-crop boxes, no flips.

    Args:
        count: number of images (int or scalar tensor).

    Returns:
        ``{"boxes": (count, 4) float32 [0, 0, 1, 1] rows, "flip": (count,) bool False}``.

    >>> {k: v.shape.as_list() for k, v in identity_params(3).items()}
    {'boxes': [3, 4], 'flip': [3]}
    """
    return {
        "boxes": tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [count, 1]),
        "flip": tf.zeros([count], tf.bool),
    }


def crop_zoom_flip(images, params: dict, size: int, indices=None):
    """Cut the drawn boxes out of ``(N, H, W, 3)`` images, resize them and flip them.

    Args:
        images: ``(N, H, W, 3)`` images (uint8 or float; values keep their units).
        params: ``boxes (M, 4)`` and ``flip (M,)`` as :func:`draw_crop_params` returns.
        size: output side in pixels.
        indices: ``(M,)`` int32, the image each box is cut from (default ``0 .. M - 1``),
            so that repeated frames are never copied before cropping.

    Returns:
        ``(M, size, size, 3)`` float32 in the images' units.
    """
    boxes = params["boxes"]
    if indices is None:
        indices = tf.range(tf.shape(boxes)[0])
    out = tf.image.crop_and_resize(images, boxes, tf.cast(indices, tf.int32), [size, size])
    return tf.where(params["flip"][:, None, None, None], tf.reverse(out, axis=[2]), out)

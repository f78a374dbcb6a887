"""``video_geometric``: shape features of 49 facial landmarks, one vector per 40 ms frame.

Follows the AVEC 2015 baseline's recipe (the features Chen & Jin used), from
dlib's 68 points (:mod:`emorec.features.landmarks68`; research use only, see
there):

1. **49 inner points.** The 68-point markup less the 17 jaw-line points
   (0-16) and the two inner mouth corners (60, 64), which the 49-point
   markup of the AVEC tracker does not have. :data:`INNER_POINTS` lists the
   68-point numbers kept, in order.
2. **Procrustes alignment** to a mean shape on the *stable* points (the four
   eye corners 36, 39, 42, 45 and the nine nose points 27-35, which move
   little with expression): the similarity (translation, rotation, uniform
   scale; no reflection) that maps a frame's stable points onto the mean
   shape's in the least-squares sense, in closed form (the rotation of
   :mod:`emorec.models.geometry`: θ = atan2(Σ p×q, Σ p·q) on centred points),
   is applied to all 49 points. The mean shape is fitted on the training
   partition by :func:`fit_mean_shape` (generalised Procrustes) and stored
   with the dataset (:func:`save_mean_shape`); it is in a canonical frame:
   the stable points' centroid at the origin, the eye centres level (the
   right eye, image left, at smaller x) and one unit apart.
3. **Features** (:data:`FEATURE_NAMES`, :data:`NUM_FEATURES` = 286), from the
   aligned points (in the mean shape's units, i.e. inter-ocular distances):

   - ``dmean_{x,y}<k>`` (98): aligned point minus the mean shape's point;
   - ``dprev_{x,y}<k>`` (98): aligned point minus the same point in the
     previous frame (zero on the first frame and after a frame without a face);
   - 41 group distances and angles, distances divided by the frame's own
     inter-ocular distance (distance between the eye centres), angles in
     radians. Per eye (``r`` = subject's right: brow 17-21, eye 36-41;
     ``l``: brow 22-26, eye 42-47), 14 each: ``eye_width`` (outer to inner
     corner), ``eye_open1``/``eye_open2`` (the two upper to lower lid
     pairs), ``brow_eye1..5`` (each brow point, inner to outer, to the eye
     centre), ``brow_slope1..4`` (elevation of each brow segment, inner to
     outer, positive when the outer end is higher), ``eye_angle_in`` and
     ``eye_angle_out`` (the eye's interior angle at its inner and outer
     corner, between the neighbouring upper and lower lid points). Mouth, 13:
     ``mouth_width`` (48-54), ``mouth_open_outer1..3`` (50-58, 51-57, 52-56),
     ``mouth_open_inner1..3`` (61-67, 62-66, 63-65), ``corner_nose_{r,l}``
     (48 and 54 to the nose tip 33), ``corner_angle_{r,l}`` (interior angle
     of the lips at 48 and 54), ``corner_lift_{r,l}`` (elevation of 48 and
     54 seen from the middle of 51-57, positive when the corner is higher);
   - ``stable_dist<k>`` (49): distance of each aligned point from the
     coordinate-wise median of the aligned stable points.

   The AVEC 2015 set has 316 dimensions: the same 98 + 98 + 49 and 71 group
   distances and angles whose exact list is not published; the 41 above are
   emorec's documented choice.
4. **Frames without a face** get zeros in every feature and ``found = 0``;
   Chen & Jin pad such frames with zeros.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from emorec.errors import MediaError
from emorec.manifest import atomic_write_bytes

NUM_POINTS_68 = 68
# The 68-point numbers of the 49 inner points, in the order the 49 are stored.
INNER_POINTS = tuple(range(17, 60)) + (61, 62, 63, 65, 66, 67)
NUM_POINTS = len(INNER_POINTS)
_AT = {p: i for i, p in enumerate(INNER_POINTS)}  # 68-point number -> index among the 49
STABLE_POINTS = (36, 39, 42, 45) + tuple(range(27, 36))
RIGHT_EYE = tuple(range(36, 42))
LEFT_EYE = tuple(range(42, 48))
MEAN_SHAPE_FORMAT_VERSION = 1
_EPS = 1e-12


def _eye(side: str) -> dict:
    """Point numbers of one eye region, ordered so that both sides mean the same thing."""
    if side == "r":  # subject's right: image left, outer end at smaller x
        return dict(
            brow=(21, 20, 19, 18, 17), eye=RIGHT_EYE, inner=39, outer=36,
            opens=((37, 41), (38, 40)), in_lids=(38, 40), out_lids=(37, 41), outward=-1.0,
        )
    return dict(
        brow=(22, 23, 24, 25, 26), eye=LEFT_EYE, inner=42, outer=45,
        opens=((43, 47), (44, 46)), in_lids=(43, 47), out_lids=(44, 46), outward=1.0,
    )


def _group_names() -> list[str]:
    names = []
    for side in ("r", "l"):
        names += [f"{side}_eye_width", f"{side}_eye_open1", f"{side}_eye_open2"]
        names += [f"{side}_brow_eye{k}" for k in range(1, 6)]
        names += [f"{side}_brow_slope{k}" for k in range(1, 5)]
        names += [f"{side}_eye_angle_in", f"{side}_eye_angle_out"]
    names += ["mouth_width"]
    names += [f"mouth_open_outer{k}" for k in range(1, 4)]
    names += [f"mouth_open_inner{k}" for k in range(1, 4)]
    names += ["corner_nose_r", "corner_nose_l", "corner_angle_r", "corner_angle_l"]
    names += ["corner_lift_r", "corner_lift_l"]
    return names


GROUP_NAMES = tuple(_group_names())
FEATURE_NAMES = (
    tuple(f"dmean_{c}{p}" for p in INNER_POINTS for c in "xy")
    + tuple(f"dprev_{c}{p}" for p in INNER_POINTS for c in "xy")
    + GROUP_NAMES
    + tuple(f"stable_dist{p}" for p in INNER_POINTS)
)
NUM_FEATURES = len(FEATURE_NAMES)  # 286


def inner_points(landmarks) -> np.ndarray:
    """The 49 inner points ``(..., 49, 2)`` of 68-point landmarks ``(..., 68, 2)`` (49 pass through).

    Args:
        landmarks: ``(..., 68, 2)`` or already ``(..., 49, 2)`` points.

    Returns:
        float64 ``(..., 49, 2)``, the points of :data:`INNER_POINTS` in that order.

    Raises:
        ValueError: any other shape.

    >>> inner_points(np.zeros((3, 68, 2))).shape, inner_points(np.zeros((49, 2))).shape
    ((3, 49, 2), (49, 2))
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape[-2:] == (NUM_POINTS, 2):
        return landmarks
    if landmarks.shape[-2:] != (NUM_POINTS_68, 2):
        raise ValueError(f"landmarks must be (..., 68, 2) or (..., 49, 2), got {landmarks.shape}")
    return landmarks[..., list(INNER_POINTS), :]


def _pts(shape: np.ndarray, numbers) -> np.ndarray:
    """Points ``(..., len(numbers), 2)`` of a 49-point shape, by their 68-point numbers."""
    return shape[..., [_AT[p] for p in numbers], :]


def _pt(shape: np.ndarray, number: int) -> np.ndarray:
    return shape[..., _AT[number], :]


def fit_similarity(source, target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity mapping points ``source`` onto ``target`` (no reflection).

    Args:
        source: ``(..., K, 2)`` points.
        target: ``(K, 2)`` or ``(..., K, 2)`` points.

    Returns:
        ``(scale (...,), rotation (..., 2, 2), translation (..., 2))`` such that
        ``scale * source @ rotation.T + translation`` is nearest to ``target``.
        A degenerate source (all points equal) gets scale 0.

    >>> s, r, t = fit_similarity([[0, 0], [1, 0], [0, 1]], [[3, 4], [3, 6], [1, 4]])
    >>> float(s), r.round(6).tolist(), t.tolist()
    (2.0, [[0.0, -1.0], [1.0, 0.0]], [3.0, 4.0])
    """
    p = np.asarray(source, dtype=np.float64)
    q = np.asarray(target, dtype=np.float64)
    p_mean, q_mean = p.mean(axis=-2, keepdims=True), q.mean(axis=-2, keepdims=True)
    pc, qc = p - p_mean, q - q_mean
    a = (pc * qc).sum(axis=(-2, -1))
    b = (pc[..., 0] * qc[..., 1] - pc[..., 1] * qc[..., 0]).sum(axis=-1)
    norm = np.sqrt(a * a + b * b)
    cos = np.where(norm > _EPS, a / np.maximum(norm, _EPS), 1.0)
    sin = np.where(norm > _EPS, b / np.maximum(norm, _EPS), 0.0)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    scale = norm / np.maximum((pc * pc).sum(axis=(-2, -1)), _EPS)
    rotated_mean = np.einsum("...ij,...kj->...ki", rotation, p_mean)[..., 0, :]
    translation = q_mean[..., 0, :] - scale[..., None] * rotated_mean
    return scale, rotation, translation


def _apply(points, scale, rotation, translation) -> np.ndarray:
    rotated = np.einsum("...ij,...kj->...ki", rotation, points)
    return scale[..., None, None] * rotated + translation[..., None, :]


def align_to_mean(landmarks, mean_shape) -> np.ndarray:
    """Procrustes-align shapes on their stable points to ``mean_shape``.

    Args:
        landmarks: ``(..., 68, 2)`` or ``(..., 49, 2)`` points.
        mean_shape: ``(49, 2)`` mean shape (see :func:`fit_mean_shape`).

    Returns:
        ``(..., 49, 2)`` aligned points.
    """
    shape = inner_points(landmarks)
    mean = _check_mean_shape(mean_shape)
    stable = _pts(shape, STABLE_POINTS)
    return _apply(shape, *fit_similarity(stable, _pts(mean, STABLE_POINTS)))


def _eye_centres(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _pts(shape, RIGHT_EYE).mean(axis=-2), _pts(shape, LEFT_EYE).mean(axis=-2)


def canonical_shape(shape) -> np.ndarray:
    """A 49-point shape moved to the canonical frame of mean shapes.

    Stable points' centroid at the origin, eye centres level (same y) with the
    right eye (image left) at smaller x, one unit apart.

    Args:
        shape: one shape, ``(68, 2)`` or ``(49, 2)`` (:func:`inner_points`).

    Returns:
        float64 ``(49, 2)``: the shape translated, rotated and scaled (a similarity) into
        that frame.

    Raises:
        ValueError: the two eye centres coincide (or are not finite), or a wrong shape.

    >>> c = canonical_shape(np.random.default_rng(0).uniform(0, 100, (68, 2)))
    >>> right, left = c[19:25].mean(axis=0), c[25:31].mean(axis=0)  # points 36-41 and 42-47
    >>> (np.round(left - right, 9) + 0.0).tolist()
    [1.0, 0.0]
    """
    shape = inner_points(shape)
    right, left = _eye_centres(shape)
    axis = left - right
    iod = float(np.hypot(*axis))
    if not np.isfinite(iod) or iod <= _EPS:
        raise ValueError("shape has both eyes at one place")
    cos, sin = axis / iod
    rotation = np.array([[cos, sin], [-sin, cos]])  # turns the eye axis onto +x
    centred = shape - _pts(shape, STABLE_POINTS).mean(axis=0)
    return centred @ rotation.T / iod


def _check_mean_shape(mean_shape) -> np.ndarray:
    mean = np.asarray(mean_shape, dtype=np.float64)
    if mean.shape != (NUM_POINTS, 2) or not np.all(np.isfinite(mean)):
        raise ValueError(f"mean shape must be {NUM_POINTS} finite [x, y] points, got {mean.shape}")
    return mean


def _usable(shapes: np.ndarray, found) -> np.ndarray:
    ok = np.all(np.isfinite(shapes), axis=(-2, -1))
    if found is not None:
        ok &= np.asarray(found).astype(bool)
    right, left = _eye_centres(shapes)
    ok &= np.hypot(*(left - right).T) > _EPS
    return ok


def fit_mean_shape(landmarks, found=None, iterations: int = 50) -> np.ndarray:
    """Generalised-Procrustes mean of many frames' shapes, on the stable points.

    Args:
        landmarks: ``(N, 68, 2)`` or ``(N, 49, 2)`` points (training frames).
        found: ``(N,)`` flags; frames with 0 are left out (None: all frames).
        iterations: most rounds of align-and-average.

    Returns:
        ``(49, 2)`` float64 mean shape in the canonical frame (:func:`canonical_shape`).

    Raises:
        ValueError: no frame with a usable shape.
    """
    shapes = inner_points(landmarks).reshape(-1, NUM_POINTS, 2)
    usable = shapes[_usable(shapes, found)]
    if len(usable) == 0:
        raise ValueError("no frame with a face to fit a mean shape on")
    mean = canonical_shape(usable[0])
    for _ in range(iterations):
        new = canonical_shape(align_to_mean(usable, mean).mean(axis=0))
        converged = np.allclose(new, mean, atol=1e-10)
        mean = new
        if converged:
            break
    return mean


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.hypot(*np.moveaxis(a - b, -1, 0))


def _interior_angle(at: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    u, v = a - at, b - at
    cross = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    return np.abs(np.arctan2(cross, (u * v).sum(axis=-1)))


def _elevation(start: np.ndarray, end: np.ndarray, outward: float) -> np.ndarray:
    """Angle of ``start -> end`` above the horizontal, ``outward`` = +1/-1 the side's outer x direction."""
    d = end - start
    return np.arctan2(-d[..., 1], outward * d[..., 0])  # image y points down


def group_features(aligned: np.ndarray) -> np.ndarray:
    """The 41 distances and angles (:data:`GROUP_NAMES`) of ``(N, 49, 2)`` aligned shapes.

    Args:
        aligned: ``(N, 49, 2)`` shapes aligned to the mean shape (:func:`align_to_mean`).

    Returns:
        ``(N, 41)`` float64, the columns of :data:`GROUP_NAMES`; distances over each shape's own
        inter-ocular distance, angles in radians.

    >>> shape = canonical_shape(np.random.default_rng(0).uniform(0, 100, (68, 2)))
    >>> group_features(shape[None]).shape
    (1, 41)
    """
    right, left = _eye_centres(aligned)
    iod = np.maximum(_distance(left, right), _EPS)
    columns = []
    for side in ("r", "l"):
        e = _eye(side)
        centre = _pts(aligned, e["eye"]).mean(axis=-2)
        columns.append(_distance(_pt(aligned, e["outer"]), _pt(aligned, e["inner"])) / iod)
        columns += [_distance(_pt(aligned, a), _pt(aligned, b)) / iod for a, b in e["opens"]]
        columns += [_distance(_pt(aligned, p), centre) / iod for p in e["brow"]]
        columns += [
            _elevation(_pt(aligned, a), _pt(aligned, b), e["outward"])
            for a, b in zip(e["brow"][:-1], e["brow"][1:])
        ]
        columns.append(_interior_angle(_pt(aligned, e["inner"]), *(_pt(aligned, p) for p in e["in_lids"])))
        columns.append(_interior_angle(_pt(aligned, e["outer"]), *(_pt(aligned, p) for p in e["out_lids"])))
    mouth = [(48, 54), (50, 58), (51, 57), (52, 56), (61, 67), (62, 66), (63, 65), (48, 33), (54, 33)]
    columns += [_distance(_pt(aligned, a), _pt(aligned, b)) / iod for a, b in mouth]
    columns.append(_interior_angle(_pt(aligned, 48), _pt(aligned, 49), _pt(aligned, 59)))
    columns.append(_interior_angle(_pt(aligned, 54), _pt(aligned, 53), _pt(aligned, 55)))
    middle = (_pt(aligned, 51) + _pt(aligned, 57)) / 2
    columns.append(_elevation(middle, _pt(aligned, 48), -1.0))
    columns.append(_elevation(middle, _pt(aligned, 54), 1.0))
    return np.stack(columns, axis=-1)


def geometric_features(landmarks, found, mean_shape) -> np.ndarray:
    """The ``video_geometric`` features of consecutive frames (see the module docstring).

    Args:
        landmarks: ``(N, 68, 2)`` or ``(N, 49, 2)`` points of N consecutive frames.
        found: ``(N,)`` 1 where the frame has a face.
        mean_shape: ``(49, 2)`` mean shape from :func:`fit_mean_shape`.

    Returns:
        ``(N, 286)`` float32 in :data:`FEATURE_NAMES` order, zeros where ``found`` is 0.
    """
    shapes = inner_points(landmarks).reshape(-1, NUM_POINTS, 2)
    mean = _check_mean_shape(mean_shape)
    n = len(shapes)
    ok = _usable(shapes, found)
    out = np.zeros((n, NUM_FEATURES), np.float32)
    if not ok.any():
        return out
    aligned = np.zeros_like(shapes)
    aligned[ok] = align_to_mean(shapes[ok], mean)
    previous_ok = np.concatenate([[False], ok[:-1]])
    delta_prev = np.zeros_like(aligned)
    both = ok & previous_ok
    delta_prev[both] = aligned[both] - aligned[np.flatnonzero(both) - 1]
    median = np.median(_pts(aligned, STABLE_POINTS), axis=-2)
    parts = [
        (aligned - mean).reshape(n, -1),
        delta_prev.reshape(n, -1),
        group_features(aligned),
        _distance(aligned, median[:, None, :]),
    ]
    features = np.concatenate(parts, axis=1)
    out[ok] = features[ok]
    return out


def save_mean_shape(path, mean_shape) -> None:
    """Write a mean shape to an ``.npz`` file atomically (stored with the dataset).

    Args:
        path: the ``.npz`` file to write (replaced if it exists).
        mean_shape: ``(49, 2)`` finite points.

    Raises:
        ValueError: ``mean_shape`` is not 49 finite ``[x, y]`` points.
    """
    buffer = io.BytesIO()
    np.savez(
        buffer,
        format_version=np.int64(MEAN_SHAPE_FORMAT_VERSION),
        mean_shape=_check_mean_shape(mean_shape),
        inner_points=np.array(INNER_POINTS, np.int64),
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_mean_shape(path) -> np.ndarray:
    """Read a mean shape written by :func:`save_mean_shape`.

    Args:
        path: an ``.npz`` file written by :func:`save_mean_shape`.

    Returns:
        The float64 ``(49, 2)`` mean shape.

    Raises:
        MediaError: a missing, unreadable or foreign file (naming it).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise MediaError(f"{path}: mean shape file does not exist") from None
    except Exception as exc:  # zip and value errors all mean "corrupt"
        raise MediaError(f"{path}: unreadable mean shape file ({exc})") from exc
    version = int(arrays.get("format_version", -1))
    if version != MEAN_SHAPE_FORMAT_VERSION:
        raise MediaError(f"{path}: mean shape format version {version}, expected {MEAN_SHAPE_FORMAT_VERSION}")
    if tuple(arrays.get("inner_points", ())) != INNER_POINTS:
        raise MediaError(f"{path}: mean shape of other points than emorec's 49")
    try:
        return _check_mean_shape(arrays["mean_shape"])
    except (KeyError, ValueError) as exc:
        raise MediaError(f"{path}: corrupt mean shape ({exc})") from exc

"""video_geometric: dlib's 68 landmarks on a real face, 49-point Procrustes alignment, shape features."""

from __future__ import annotations

import numpy as np
import pytest
from media_samples import PHOTO_FACE_BOX, PHOTO_LANDMARKS

from emorec.errors import ConfigError, MediaError
from emorec.features import geometric as geo
from emorec.features.landmarks68 import (
    DEBIAN_MODEL,
    MODEL_ENV,
    LandmarkPredictor,
    find_shape_predictor,
    predictor_box,
)
from emorec.media.faces import square_boxes

MARGIN = 0.2


def rotation(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def face_like_shape(seed: int = 0, noise: float = 0.8) -> np.ndarray:
    """68 points of a plausible, symmetric face layout plus ``noise`` px of noise, in pixels."""
    rng = np.random.default_rng(seed)
    jaw = np.stack([np.linspace(-60, 60, 17), 40 - 50 * np.cos(np.linspace(0, np.pi, 17))], 1)
    right_brow = np.stack([np.linspace(-50, -12, 5), [-38, -45, -47, -45, -40]], 1)
    left_brow = right_brow[::-1] * [-1, 1]
    bridge = np.stack([np.zeros(4), np.linspace(-25, 5, 4)], 1)
    nostrils = np.stack([np.linspace(-10, 10, 5), [12, 14, 15, 14, 12]], 1)
    right_eye = np.array([[-42, -25], [-36, -30], [-26, -30], [-18, -24], [-26, -20], [-36, -20]], float)
    left_eye = right_eye[[3, 2, 1, 0, 5, 4]] * [-1, 1]
    outer = np.array(
        [[-25, 38], [-16, 32], [-6, 30], [0, 31], [6, 30], [16, 32], [25, 38],
         [16, 45], [6, 48], [0, 48], [-6, 48], [-16, 45]], float)
    inner = np.array([[-20, 38], [-6, 35], [0, 35], [6, 35], [20, 38], [6, 41], [0, 41], [-6, 41]], float)
    points = np.concatenate([jaw, right_brow, left_brow, bridge, nostrils, right_eye, left_eye, outer, inner])
    assert points.shape == (68, 2)
    return points + rng.normal(0, noise, points.shape) + [200, 150]


def similarity(points, scale, degrees, shift) -> np.ndarray:
    return scale * np.asarray(points) @ rotation(degrees).T + shift


def test_point_selection_and_feature_names():
    assert len(geo.INNER_POINTS) == geo.NUM_POINTS == 49
    assert not set(range(17)) & set(geo.INNER_POINTS) and 60 not in geo.INNER_POINTS and 64 not in geo.INNER_POINTS
    assert geo.NUM_FEATURES == len(set(geo.FEATURE_NAMES)) == 98 + 98 + 41 + 49 == 286
    assert geo.FEATURE_NAMES[:3] == ("dmean_x17", "dmean_y17", "dmean_x18")
    assert geo.FEATURE_NAMES[196] == "r_eye_width" and geo.FEATURE_NAMES[-1] == "stable_dist67"
    shape = face_like_shape()
    np.testing.assert_array_equal(geo.inner_points(shape)[-6:], shape[[61, 62, 63, 65, 66, 67]])


def test_fit_similarity_hand_checked():
    # Target = 2 x (rotation by +90 degrees) x source + (3, 4), by hand.
    source = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    target = np.array([[3.0, 4.0], [3.0, 6.0], [1.0, 4.0]])
    scale, rot, shift = geo.fit_similarity(source, target)
    assert scale == pytest.approx(2.0)
    np.testing.assert_allclose(rot, [[0, -1], [1, 0]], atol=1e-12)
    np.testing.assert_allclose(shift, [3, 4], atol=1e-12)
    # A mirror image is not reachable. By hand, for the triangle mirrored in x: on centred
    # points sum p.q = 0 and sum p x q = -6/9, so the rotation is -90 degrees and the scale
    # (6/9) / (sum |p|^2 = 12/9) = 0.5: the fit shrinks the triangle instead of flipping it.
    scale, rot, _ = geo.fit_similarity(source, source * [-1, 1])
    assert scale == pytest.approx(0.5)
    np.testing.assert_allclose(rot, [[0, 1], [-1, 0]], atol=1e-12)


def test_alignment_is_invariant_to_translation_scale_and_rotation():
    shape = face_like_shape()
    mean = geo.fit_mean_shape(face_like_shape(1)[None])
    aligned = geo.align_to_mean(shape, mean)
    for scale, degrees, shift in [(1.0, 0.0, (37.0, -12.0)), (0.25, 0.0, (0.0, 0.0)), (3.0, 71.0, (5.0, 9.0))]:
        moved = similarity(shape, scale, degrees, shift)
        np.testing.assert_allclose(geo.align_to_mean(moved, mean), aligned, atol=1e-9)
    # A shape that IS the mean, moved by a known similarity, aligns back onto the mean exactly.
    moved_mean = similarity(mean, 40.0, -20.0, (120.0, 80.0))
    np.testing.assert_allclose(geo.align_to_mean(moved_mean, mean), mean, atol=1e-12)


def test_canonical_frame_of_the_mean_shape():
    shape = face_like_shape()
    mean = geo.fit_mean_shape(np.stack([similarity(shape, s, d, (s, d)) for s, d in [(1, 0), (2, 30), (0.5, -45)]]))
    np.testing.assert_allclose(mean, geo.canonical_shape(shape), atol=1e-9)
    right = mean[[geo.INNER_POINTS.index(p) for p in range(36, 42)]].mean(0)
    left = mean[[geo.INNER_POINTS.index(p) for p in range(42, 48)]].mean(0)
    assert left[0] - right[0] == pytest.approx(1.0) and left[1] == pytest.approx(right[1])
    stable = mean[[geo.INNER_POINTS.index(p) for p in geo.STABLE_POINTS]]
    np.testing.assert_allclose(stable.mean(0), 0.0, atol=1e-12)


def test_group_features_against_the_raw_points():
    shape = face_like_shape()
    mean = geo.fit_mean_shape(face_like_shape(3)[None])
    features = geo.geometric_features(shape[None], [1], mean)[0]
    named = dict(zip(geo.FEATURE_NAMES, features))
    iod = np.linalg.norm(shape[42:48].mean(0) - shape[36:42].mean(0))
    assert named["r_eye_width"] == pytest.approx(np.linalg.norm(shape[36] - shape[39]) / iod, rel=1e-5)
    assert named["mouth_open_inner2"] == pytest.approx(np.linalg.norm(shape[62] - shape[66]) / iod, rel=1e-5)
    u, v = shape[49] - shape[48], shape[59] - shape[48]
    angle = np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
    assert named["corner_angle_r"] == pytest.approx(angle, rel=1e-5)
    # Angles in the aligned (level-eyed) frame, hand-checked on the noise-free layout: the
    # mouth corners (y 38) are 1.5 px above the middle of 51-57 (y (31 + 48) / 2) and 25 px
    # to its side; the right brow's first segment, inner to outer, runs (-12, -40) -> (-21.5, -45).
    layout = face_like_shape(noise=0.0)
    exact = geo.geometric_features(layout[None], [1], geo.fit_mean_shape(layout[None]))[0]
    named = dict(zip(geo.FEATURE_NAMES, exact))
    assert named["corner_lift_r"] == pytest.approx(np.arctan2(1.5, 25), rel=1e-5)
    assert named["corner_lift_l"] == pytest.approx(np.arctan2(1.5, 25), rel=1e-5)
    assert named["r_brow_slope1"] == pytest.approx(np.arctan2(5, 9.5), rel=1e-5)
    assert named["l_brow_slope1"] == pytest.approx(np.arctan2(5, 9.5), rel=1e-5)


def test_features_are_invariant_and_zero_without_a_face():
    frames = np.stack([face_like_shape(s) for s in range(4)])
    mean = geo.fit_mean_shape(frames)
    found = np.array([1, 1, 0, 1])
    features = geo.geometric_features(frames, found, mean)
    assert features.shape == (4, 286) and features.dtype == np.float32
    moved = similarity(frames, 2.5, 33.0, (-40.0, 17.0))
    np.testing.assert_allclose(geo.geometric_features(moved, found, mean), features, atol=2e-5)
    np.testing.assert_array_equal(features[2], 0.0)  # no face: zeros
    dprev = slice(98, 196)
    np.testing.assert_array_equal(features[0, dprev], 0.0)  # first frame
    np.testing.assert_array_equal(features[3, dprev], 0.0)  # after a frame without a face
    aligned = geo.align_to_mean(frames[:2], mean)
    np.testing.assert_allclose(features[1, dprev], (aligned[1] - aligned[0]).ravel(), atol=1e-6)
    np.testing.assert_allclose(features[1, :98], (aligned[1] - mean).ravel(), atol=1e-6)
    median = np.median(aligned[1][[geo.INNER_POINTS.index(p) for p in geo.STABLE_POINTS]], axis=0)
    np.testing.assert_allclose(features[1, -49:], np.linalg.norm(aligned[1] - median, axis=1), atol=1e-6)
    assert not geo.geometric_features(frames, np.zeros(4), mean).any()


def test_mean_shape_file(tmp_path):
    mean = geo.fit_mean_shape(face_like_shape()[None])
    path = tmp_path / "mean_shape.npz"
    geo.save_mean_shape(path, mean)
    np.testing.assert_array_equal(geo.load_mean_shape(path), mean)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(MediaError, match=r"bad\.npz: unreadable mean shape file"):
        geo.load_mean_shape(bad)
    with pytest.raises(MediaError, match=r"none\.npz: mean shape file does not exist"):
        geo.load_mean_shape(tmp_path / "none.npz")


# -- dlib on a real photograph ------------------------------------------------------------------


def test_missing_or_wrong_model_file_is_named(tmp_path, monkeypatch):
    missing = tmp_path / "shape_predictor_68_face_landmarks.dat"
    with pytest.raises(ConfigError, match=rf"^{missing}: no dlib shape predictor here; install Debian's libdlib-data"):
        find_shape_predictor(missing)
    monkeypatch.setenv(MODEL_ENV, str(missing))
    with pytest.raises(ConfigError, match=rf"^{missing}: no dlib shape predictor"):
        find_shape_predictor()
    pytest.importorskip("dlib", reason="dlib is an optional extra (pip install 'emorec[landmarks]')")
    missing.write_bytes(b"this is not a dlib model" * 10)
    with pytest.raises(ConfigError, match=rf"^{missing}: not a dlib shape predictor"):
        LandmarkPredictor()


@pytest.fixture(scope="module")
def predictor():
    pytest.importorskip("dlib", reason="dlib is an optional extra (pip install 'emorec[landmarks]')")
    if not DEBIAN_MODEL.is_file():
        pytest.skip(f"{DEBIAN_MODEL} missing (apt-get install libdlib-data)")
    return LandmarkPredictor(DEBIAN_MODEL)


def test_astronaut_landmarks_land_on_her_face(predictor):
    from skimage.data import astronaut

    photo = astronaut()
    centre, side = square_boxes(PHOTO_FACE_BOX[None], MARGIN)
    track_box = np.concatenate([centre[0] - side[0] / 2, centre[0] + side[0] / 2])
    frames = [photo, np.zeros_like(photo), photo]
    landmarks, found = predictor.predict_track(frames, np.stack([track_box] * 3), [1, 0, 1], MARGIN)
    assert landmarks.shape == (3, 68, 2) and found.tolist() == [1, 0, 1]
    np.testing.assert_array_equal(landmarks[1], 0.0)
    np.testing.assert_array_equal(landmarks[0], landmarks[2])
    points = landmarks[0].astype(np.float64)
    np.testing.assert_allclose(points, predictor.predict(photo, predictor_box(track_box, MARGIN)))
    # All 68 inside the crop box; the 49 inner ones inside MTCNN's face box (2 px slack).
    assert np.all((points >= track_box[:2]) & (points <= track_box[2:]))
    inner = geo.inner_points(points)
    assert np.all((inner >= PHOTO_FACE_BOX[:2] - 2) & (inner <= PHOTO_FACE_BOX[2:] + 2))
    right_eye, left_eye = points[36:42].mean(0), points[42:48].mean(0)
    mouth, nose_tip, chin = points[48:60].mean(0), points[30], points[8]
    assert right_eye[0] < left_eye[0]  # subject's right eye is on the image's left
    assert max(right_eye[1], left_eye[1]) < nose_tip[1] < mouth[1] < chin[1]
    assert points[17:27, 1].max() < min(points[36:48, 1].min(), 110)  # brows above eyes
    # MTCNN's five points (left eye, right eye in image order, nose, mouth corners) agree within 5 px.
    dlib_five = np.stack([right_eye, left_eye, points[30], points[48], points[54]])
    assert np.abs(dlib_five - PHOTO_LANDMARKS).max() < 5.0
    features = geo.geometric_features(landmarks, found, geo.fit_mean_shape(landmarks, found))
    assert np.all(features[1] == 0) and np.abs(features[0, :98]).max() < 1e-6

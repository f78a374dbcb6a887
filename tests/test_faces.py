"""Tests of the face pipeline: keyframe tracking, interpolation, crops and the detection cache."""

from __future__ import annotations

import numpy as np
import pytest

from emorec.errors import ConfigError, MediaError
from emorec.media.faces import (
    FaceConfig,
    FaceTrack,
    cache_path,
    crop_face,
    load_or_track_faces,
    track_faces,
)

# --- a fake detector: frame i is a constant image of value i ------------------


class FakeDetector:
    """MTCNN-like ``detect_faces`` on constant frames whose value is the frame index.

    In the image it is given, frame ``i``'s face is ``[x, y, w, h] = [i^2/5, 2i,
    20 + i, 24 + i]`` with the left eye at ``(x + 5, y + 5)``; frames in
    ``missing`` (or not in ``present``) have no face.
    """

    def __init__(self, present=None, missing=()):
        self.present = present
        self.missing = set(missing)
        self.seen: list[int] = []

    def detect_faces(self, image):
        i = int(image[0, 0, 0])
        assert np.all(image == i), "frames must stay constant through the downscale"
        self.seen.append(i)
        if i in self.missing or (self.present is not None and i not in self.present):
            return []
        x, y, w, h = i * i / 5, 2.0 * i, 20.0 + i, 24.0 + i
        points = {
            "left_eye": [x + 5, y + 5],
            "right_eye": [x + 15, y + 5],
            "nose": [x + 10, y + 12],
            "mouth_left": [x + 6, y + 18],
            "mouth_right": [x + 14, y + 18],
        }
        decoy = {"box": [0, 0, 4, 4], "confidence": 0.99, "keypoints": points}  # smaller face
        return [decoy, {"box": [x, y, w, h], "confidence": 0.9, "keypoints": points}]


def constant_frames(n, size=(640, 480)):
    """Frames of value 0, 1, ..., n - 1 (``size`` = width, height)."""
    width, height = size
    for i in range(n):
        yield np.full((height, width, 3), i, dtype=np.uint8)


def fake_box(i, scale=2.0, margin=0.0):
    """Square full-frame box of the fake face of frame ``i`` (hand formula of FakeDetector)."""
    x, y, w, h = i * i / 5, 2.0 * i, 20.0 + i, 24.0 + i
    cx, cy, side = (x + w / 2) * scale, (y + h / 2) * scale, max(w, h) * scale * (1 + 2 * margin)
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


@pytest.mark.parametrize("batch", [1, 2, 8])  # chunk edges fall between and on the keyframes
def test_keyframe_interpolation_against_hand_computed_boxes(batch):
    # 23 frames, face in 0..13, keyframes every 5 frames on a frame downscaled by 2.
    config = FaceConfig(
        detect_every=5, detect_max_side=320, detect_batch=batch, smoothing=1, margin=0.0, max_gap=0
    )
    detector = FakeDetector(present=set(range(14)))
    track = track_faces(constant_frames(23), config, detector=detector, progress=False)

    # Keyframes 0, 5, ..., 20, the last frame 22, and the frames between the
    # last keyframe with a face (10) and the first without (15).
    assert sorted(detector.seen) == [0, 5, 10, 11, 12, 13, 14, 15, 20, 22]
    assert track.found.tolist() == [1] * 14 + [0] * 9
    assert track.boxes.dtype == np.float32 and track.boxes.shape == (23, 4)
    assert track.landmarks.shape == (23, 5, 2) and track.found.dtype == np.int8
    # Frame 2, 2/5 of the way from keyframe 0 (centre (20, 24), side 48) to
    # keyframe 5 (centre (35, 49), side 58): centre (26, 34), side 52.
    np.testing.assert_allclose(track.boxes[2], [0, 8, 52, 60], atol=1e-4)
    # Left eye: (10, 10) at frame 0, (20, 30) at frame 5.
    np.testing.assert_allclose(track.landmarks[2, 0], [14, 18], atol=1e-4)
    for i in (0, 5, 10, 11, 12, 13):  # detected frames keep their detection
        np.testing.assert_allclose(track.boxes[i], fake_box(i), atol=1e-3)
    # Frames without a face hold the nearest found box (frame 13's).
    np.testing.assert_allclose(track.boxes[16], [63.6, 52, 137.6, 126], atol=1e-3)
    np.testing.assert_allclose(track.boxes[14:], np.repeat(track.boxes[13:14], 9, axis=0))
    np.testing.assert_allclose(track.landmarks[22], track.landmarks[13])
    assert track.missing_runs() == [(14, 22)]


def test_edges_without_refinement_stay_on_keyframes():
    config = FaceConfig(detect_every=5, smoothing=1, margin=0.0, max_gap=0, refine_edges=False)
    detector = FakeDetector(present=set(range(7, 23)))
    track = track_faces(constant_frames(23, (200, 100)), config, detector=detector, progress=False)
    assert sorted(detector.seen) == [0, 5, 10, 15, 20, 22]
    assert track.found.tolist() == [0] * 10 + [1] * 13
    np.testing.assert_allclose(track.boxes[:10], np.repeat(track.boxes[10:11], 10, axis=0))
    np.testing.assert_allclose(track.boxes[10], fake_box(10, scale=1.0), atol=1e-3)


def test_short_gaps_are_bridged_and_long_ones_are_not():
    frames = 12
    bridged = FaceConfig(detect_every=1, smoothing=1, margin=0.0, max_gap=1)
    track = track_faces(
        constant_frames(frames, (100, 80)), bridged, detector=FakeDetector(missing={7}),
        progress=False,
    )
    assert track.found.tolist() == [1] * frames
    np.testing.assert_allclose(track.boxes[7], (fake_box(6, 1.0) + fake_box(8, 1.0)) / 2, atol=1e-3)

    strict = FaceConfig(detect_every=1, smoothing=1, margin=0.0, max_gap=0)
    track = track_faces(
        constant_frames(frames, (100, 80)), strict, detector=FakeDetector(missing={7}),
        progress=False,
    )
    assert track.found.tolist() == [1] * 7 + [0] + [1] * 4
    # Equally near to frames 6 and 8: the earlier one wins.
    np.testing.assert_allclose(track.boxes[7], fake_box(6, 1.0), atol=1e-3)


def test_smoothing_is_a_centred_mean_that_keeps_straight_motion():
    n = 9
    config = FaceConfig(detect_every=1, smoothing=3, margin=0.5)

    class Jitter:
        def detect_faces(self, image):
            i = int(image[0, 0, 0])
            x = 10.0 * i + (2.0 if i % 2 else -2.0)  # straight motion plus +-2 px jitter
            points = {name: [x, 5.0] for name in
                      ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")}
            return [{"box": [x, 5.0, 20.0, 10.0], "confidence": 1.0, "keypoints": points}]

    track = track_faces(constant_frames(n, (120, 60)), config, detector=Jitter(), progress=False)
    centre_x = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
    raw = 10.0 * np.arange(n) + np.where(np.arange(n) % 2, 2.0, -2.0) + 10.0
    expected = raw.copy()
    expected[1:-1] = (raw[:-2] + raw[1:-1] + raw[2:]) / 3  # ends: window shrinks to 1
    np.testing.assert_allclose(centre_x, expected, atol=1e-4)
    np.testing.assert_allclose(track.boxes[:, 2] - track.boxes[:, 0], 40.0, atol=1e-4)  # 20 * 2
    # Landmarks are not smoothed.
    np.testing.assert_allclose(track.landmarks[:, 0, 0], raw - 10.0, atol=1e-4)


class FakeMtcnn:
    """Answers like ``mtcnn.MTCNN.detect_faces(..., output_type="numpy", box_format="xyxy")``."""

    __module__ = "mtcnn.fake"

    def __init__(self):
        self.kwargs = None

    def detect_faces(self, images, **kwargs):
        self.kwargs = kwargs
        # [image, x0, y0, x1, y1, confidence, five x's, five y's]; image 1 has two faces.
        return np.array([
            [0, 10, 20, 30, 44, 0.95, 1, 2, 3, 4, 5, 11, 12, 13, 14, 15],
            [1, 0, 0, 8, 8, 0.99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [1, 40, 40, 80, 90, 0.75, 41, 42, 43, 44, 45, 51, 52, 53, 54, 55],
        ])


def test_mtcnn_rows_are_read_in_its_layout():
    detector = FakeMtcnn()
    config = FaceConfig(detect_every=2, smoothing=1, margin=0.0, max_gap=0)
    track = track_faces(constant_frames(3, (100, 100)), config, detector=detector, progress=False)
    assert detector.kwargs["threshold_onet"] == config.min_confidence
    assert detector.kwargs["fit_to_image"] is False
    # Frame 0 is image 0 of the batch (frames 0 and 2), frame 2 is image 1: its larger face.
    np.testing.assert_allclose(track.boxes[0], [8, 20, 32, 44])
    np.testing.assert_allclose(track.landmarks[0], [[1, 11], [2, 12], [3, 13], [4, 14], [5, 15]])
    np.testing.assert_allclose(track.boxes[2], [35, 40, 85, 90])
    np.testing.assert_allclose(track.landmarks[2], [[41, 51], [42, 52], [43, 53], [44, 54], [45, 55]])
    np.testing.assert_allclose(track.boxes[1], (track.boxes[0] + track.boxes[2]) / 2)


def test_num_frames_limits_the_stream_and_frames_must_be_rgb():
    detector = FakeDetector()
    track = track_faces(constant_frames(30, (64, 48)), FaceConfig(), detector=detector,
                        num_frames=12, progress=False)
    assert len(track) == 12 and max(detector.seen) == 11
    with pytest.raises(MediaError, match="clip.mp4: frame 0"):
        track_faces([np.zeros((10, 10), np.uint8)], detector=detector, progress=False,
                    source="clip.mp4")


def test_no_face_raises_media_error_with_the_source_name():
    with pytest.raises(MediaError, match="clip.mp4: no detectable face"):
        track_faces(constant_frames(8, (64, 48)), detector=FakeDetector(present=set()),
                    progress=False, source="clip.mp4")


# --- crops ---------------------------------------------------------------------


def blocky_frame(height=60, width=80, seed=0):
    """Random frame made of constant 2 x 2 blocks, so a 2x INTER_AREA shrink is exact."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(height // 2, width // 2, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)


def test_crop_pads_with_black_at_the_frame_edge_and_keeps_landmarks():
    frame = blocky_frame()  # 60 rows, 80 columns
    box = [-10.0, 50.0, 30.0, 90.0]  # leaves the frame on the left and at the bottom
    marks = np.array([[5, 55], [20, 52], [-10, 50], [30, 90], [0, 60]], dtype=np.float32)
    crop, crop_marks = crop_face(frame, box, marks, size=20)
    padded = np.zeros((40, 40, 3), dtype=np.uint8)
    padded[0:10, 10:40] = frame[50:60, 0:30]
    expected = padded[::2, ::2]  # blocks are constant, so their mean is any pixel
    assert crop.dtype == np.uint8 and crop.shape == (20, 20, 3)
    np.testing.assert_array_equal(crop, expected)
    np.testing.assert_array_equal(
        crop_marks, [[7.5, 2.5], [15, 1], [0, 0], [20, 20], [5, 5]]
    )
    # The same box with rounding noise, and with no resize at all (side == size).
    crop2, marks2 = crop_face(frame, [-9.6, 50.4, 30.4, 90.3], marks, size=20)
    np.testing.assert_array_equal(crop2, expected)
    np.testing.assert_array_equal(marks2, crop_marks)
    crop3, marks3 = crop_face(frame, box, marks, size=40)
    np.testing.assert_array_equal(crop3, padded)
    np.testing.assert_array_equal(marks3, marks - [-10, 50])


def test_crop_inside_the_frame_and_outside_it():
    frame = blocky_frame()
    crop, marks = crop_face(frame, [20, 10, 60, 50], np.full((5, 2), 40.0), size=20)
    np.testing.assert_array_equal(crop, frame[10:50:2, 20:60:2])
    np.testing.assert_array_equal(marks, np.tile([[10.0, 15.0]], (5, 1)))
    # Upscaling (side < size) keeps the geometry: landmark scale is size / side.
    crop, marks = crop_face(frame, [20, 10, 30, 20], np.tile([[25.0, 15.0]], (5, 1)), size=40)
    assert crop.shape == (40, 40, 3)
    np.testing.assert_array_equal(marks, np.full((5, 2), 20.0))
    crop, _ = crop_face(frame, [100, 100, 140, 140], np.zeros((5, 2)), size=16)
    assert crop.shape == (16, 16, 3) and not crop.any()


# --- config, track files and the cache ---------------------------------------


def test_config_round_trip_and_validation():
    config = FaceConfig(detect_every=3, margin=0.3)
    assert FaceConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown key"):
        FaceConfig.from_dict({"detect_evry": 3})
    with pytest.raises(ConfigError, match="detect_every"):
        FaceConfig(detect_every=0)


def test_track_save_load_and_corrupt_file(tmp_path):
    rng = np.random.default_rng(1)
    track = FaceTrack(rng.random((7, 4)), rng.random((7, 5, 2)), [1, 1, 0, 0, 1, 1, 1])
    path = tmp_path / "track.npz"
    track.save(path)
    loaded = FaceTrack.load(path)
    np.testing.assert_array_equal(loaded.boxes, track.boxes)
    np.testing.assert_array_equal(loaded.landmarks, track.landmarks)
    np.testing.assert_array_equal(loaded.found, track.found)
    assert loaded.found.dtype == np.int8 and loaded.boxes.dtype == np.float32
    path.write_bytes(b"not a zip file")
    with pytest.raises(MediaError, match="track.npz"):
        FaceTrack.load(path)


def test_cache_hits_misses_and_corrupt_files(tmp_path):
    video = tmp_path / "rec.mp4"
    video.write_bytes(b"pretend video " * 1000)
    cache = tmp_path / "cache"
    detector = FakeDetector()
    base = FaceConfig(detect_every=4, smoothing=1)

    def run(config):
        before = len(detector.seen)
        track = load_or_track_faces(
            video, config, cache, lambda: constant_frames(20, (64, 48)), progress=False,
            detector=detector,
        )
        return track, len(detector.seen) - before

    first, calls = run(base)
    assert calls == 6 and len(first) == 20  # keyframes 0, 4, ..., 16 and frame 19
    again, calls = run(base)
    assert calls == 0
    np.testing.assert_array_equal(again.boxes, first.boxes)
    # Post-detection settings reuse the detections; the crop size is not a setting at all.
    wider, calls = run(FaceConfig(detect_every=4, smoothing=5, margin=0.5, max_gap=9, detect_batch=2))
    assert calls == 0
    assert not np.allclose(wider.boxes, first.boxes)
    assert cache_path(video, base, cache, detector) == cache_path(
        video, FaceConfig(detect_every=4, margin=0.5), cache, detector
    )
    # Detection settings and the video's content are part of the key.
    _, calls = run(FaceConfig(detect_every=5, smoothing=1))
    assert calls == 5  # 0, 5, 10, 15, 19
    assert cache_path(video, base, cache, detector) != cache_path(
        video, FaceConfig(detect_every=4, min_confidence=0.9), cache, detector
    )
    with open(video, "ab") as handle:
        handle.write(b"x")
    _, calls = run(base)
    assert calls == 6
    # A corrupt cache file is detected again and rewritten.
    path = cache_path(video, base, cache, detector)
    path.write_bytes(b"garbage")
    _, calls = run(base)
    assert calls == 6
    _, calls = run(base)
    assert calls == 0


# --- the real detector on real faces -----------------------------------------


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    media_samples = pytest.importorskip("media_samples")
    path = tmp_path_factory.mktemp("faces") / "astronaut.mp4"
    # 3 s at 640 x 480; the face shows from 1.0 s (frame 25) until 2.2 s (frame 55).
    truth = media_samples.astronaut_face_video(
        path, seconds=3.0, size=(640, 480), with_audio=False, face_from=1.0, face_until=2.2
    )
    cache = tmp_path_factory.mktemp("face_cache")
    track = load_or_track_faces(path, FaceConfig(), cache_dir=cache, progress=False)
    return truth, track


def test_real_face_found_where_it_is_shown(astronaut):
    truth, track = astronaut
    present = truth.grid_present
    assert len(track) == truth.grid_frames == 75
    assert track.found.tolist() == present.astype(int).tolist()
    first, last = np.flatnonzero(present)[[0, -1]]
    # Frames without a face carry the nearest found frame's box and landmarks.
    np.testing.assert_array_equal(track.boxes[:first], np.repeat(track.boxes[first:first + 1], first, 0))
    np.testing.assert_array_equal(track.boxes[last + 1:], np.repeat(track.boxes[last:last + 1], 74 - last, 0))
    np.testing.assert_array_equal(track.landmarks[last + 1:], np.repeat(track.landmarks[last:last + 1], 74 - last, 0))


def test_real_face_box_and_landmarks_match_the_truth(astronaut):
    truth, track = astronaut
    present = truth.grid_present
    gt = truth.grid_boxes[present]
    centre_gt = (gt[:, :2] + gt[:, 2:]) / 2
    boxes = track.boxes[present]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    error = np.linalg.norm(centre - centre_gt, axis=1)
    assert error.max() < 4.0, error
    side = boxes[:, 2] - boxes[:, 0]
    np.testing.assert_allclose(side, boxes[:, 3] - boxes[:, 1], rtol=1e-5)  # square
    gt_side = np.maximum(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]) * (1 + 2 * FaceConfig().margin)
    np.testing.assert_allclose(side, gt_side, rtol=0.1)
    # Landmarks in the documented order (left eye is the one on the image's left).
    marks_error = np.linalg.norm(track.landmarks[present] - truth.grid_landmarks[present], axis=2)
    assert marks_error.mean() < 4.0 and marks_error.max() < 8.0, marks_error.max()


def test_real_face_crop_puts_the_landmarks_in_place(astronaut):
    from emorec.media.video import iter_grid_frames

    truth, track = astronaut
    i = int(np.flatnonzero(truth.grid_present)[10])
    frame = next(x for k, x in enumerate(iter_grid_frames(truth.path)) if k == i)
    crop, marks = crop_face(frame, track.boxes[i], track.landmarks[i], size=96)
    box = track.boxes[i]
    expected = (truth.grid_landmarks[i] - box[:2]) * 96 / (box[2] - box[0])
    assert np.linalg.norm(marks - expected, axis=1).max() < 8.0
    # Eyes above the mouth, left eye left of the right one, all inside the crop.
    assert marks[0, 0] < marks[1, 0] and marks[:2, 1].max() < marks[3:, 1].min()
    assert np.all((marks > 0) & (marks < 96))


def test_video_without_a_face_raises_media_error(tmp_path):
    media_samples = pytest.importorskip("media_samples")
    path = tmp_path / "empty.mp4"
    media_samples.astronaut_face_video(path, seconds=1.0, size=(320, 240), with_audio=False, face_from=5.0)
    with pytest.raises(MediaError, match="empty.mp4: no detectable face"):
        load_or_track_faces(path, cache_dir=tmp_path / "cache", progress=False)

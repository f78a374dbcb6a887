"""Window cutting: start frames, padding masks and the streaming windower."""

import cv2
import numpy as np
import pytest

from emorec.errors import ConfigError
from emorec.schema import FRAME_SAMPLES, NUM_LANDMARKS
from emorec.windows import (
    Frame,
    RecordingInfo,
    black_jpeg,
    iter_windows,
    seconds_to_frames,
    valid_frames,
    window_starts,
)


def test_seconds_to_frames():
    assert seconds_to_frames(6.0) == 150
    assert seconds_to_frames(0.2) == 5
    assert seconds_to_frames(0.04) == 1
    for bad in (0.0, 0.05, -0.4):
        with pytest.raises(ConfigError, match="multiple of the 0.04 s frame"):
            seconds_to_frames(bad)


@pytest.mark.parametrize(
    "n, w, h, starts",
    [
        (7500, 150, 150, list(range(0, 7500, 150))),  # a 300 s RECOLA recording: 50 full windows
        (7501, 150, 150, list(range(0, 7501, 150))),  # one frame more: a 51st window of 1 frame
        (12, 5, 5, [0, 5, 10]),
        (10, 5, 5, [0, 5]),
        (3, 5, 5, [0]),
        (12, 5, 2, [0, 2, 4, 6, 8]),  # 8 + 5 reaches the end: no window starting at 10
        (13, 5, 2, [0, 2, 4, 6, 8]),
        (14, 5, 2, [0, 2, 4, 6, 8, 10]),
        (0, 5, 5, []),
    ],
)
def test_window_starts(n, w, h, starts):
    assert window_starts(n, w, h) == starts
    if starts:
        # The last window always reaches the end, the one before it never does.
        assert starts[-1] + w >= n
        assert len(starts) == 1 or starts[-2] + w < n


def test_valid_frames_cover_the_recording_once_without_overlap():
    n, w = 7501, 150
    counts = [valid_frames(n, s, w) for s in window_starts(n, w, w)]
    assert counts[:-1] == [150] * 50 and counts[-1] == 1
    assert sum(counts) == n


def test_bad_hop():
    with pytest.raises(ConfigError, match="hop"):
        window_starts(10, 5, 6)
    with pytest.raises(ConfigError, match="hop"):
        window_starts(10, 5, 0)


def _info(**kw):
    base = dict(recording_id="r", subject_id="s", partition="train", has_audio=True,
                has_video=True, has_labels=True, face_size=16)
    base.update(kw)
    return RecordingInfo(**base)


def _frames(n, log=None):
    face = black_jpeg(16)
    for i in range(n):
        if log is not None:
            log.append(i)
        yield Frame(
            audio=np.full(FRAME_SAMPLES, i, np.float32),
            face=face,
            face_found=1,
            landmarks=np.full((NUM_LANDMARKS, 2), i, np.float32),
            labels=np.array([i, -i], np.float32),
        )


@pytest.mark.parametrize("n, w, h", [(12, 5, 5), (10, 5, 5), (3, 5, 5), (14, 5, 2), (7, 1, 1)])
def test_iter_windows_matches_window_starts_and_pads(n, w, h):
    windows = list(iter_windows(_frames(n), _info(), w, h))
    assert [x.start_frame for x in windows] == window_starts(n, w, h)
    for x in windows:
        x.check()
        real = valid_frames(n, x.start_frame, w)
        assert x.valid.tolist() == [1] * real + [0] * (w - real)
        frame_index = np.arange(x.start_frame, x.start_frame + real, dtype=np.float32)
        np.testing.assert_array_equal(x.audio[:real, 0], frame_index)
        np.testing.assert_array_equal(x.labels[:real, 1], -frame_index)
        np.testing.assert_array_equal(x.landmarks[:real, 0, 0], frame_index)
        # Padding: zero audio, landmarks and labels, no face found, a black face.
        assert not x.audio[real:].any() and not x.labels[real:].any() and not x.landmarks[real:].any()
        assert x.face_found.tolist() == [1] * real + [0] * (w - real)
        for jpeg in x.faces[real:]:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (16, 16, 3) and image.max() == 0


def test_iter_windows_streams():
    """A window comes out as soon as its last frame is in: at most W frames are held."""
    log = []
    stream = iter_windows(_frames(20, log), _info(), 5, 5)
    first = next(stream)
    assert first.start_frame == 0 and log == [0, 1, 2, 3, 4]
    second = next(stream)
    assert second.start_frame == 5 and len(log) == 10


def test_iter_windows_absent_modalities():
    info = _info(has_video=False, has_labels=False)
    frames = [Frame(audio=np.zeros(FRAME_SAMPLES, np.float32)) for _ in range(3)]
    (window,) = iter_windows(frames, info, 4, 4)
    assert window.faces is None and window.labels is None and window.landmarks is None
    assert window.audio.shape == (4, FRAME_SAMPLES)

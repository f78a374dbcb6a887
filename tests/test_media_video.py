"""emorec.media.video and write_mp4: probing, the 40 ms grid mapping, streaming, errors."""

from __future__ import annotations

import types

import numpy as np
import pytest
from media_samples import astronaut_face_video, speech_samples

from emorec.errors import MediaError
from emorec.media.video import count_grid_frames, iter_grid_frames, probe_media
from emorec.media.write import write_mp4, write_wav
from emorec.schema import FRAME_PERIOD, SAMPLE_RATE

BITS = 8
BLOCK = 16


def _index_frame(k: int) -> np.ndarray:
    """A 16 x 128 frame whose eight black/white blocks spell ``k`` in binary (survives H.264)."""
    frame = np.zeros((BLOCK, BITS * BLOCK, 3), np.uint8)
    for bit in range(BITS):
        if (k >> bit) & 1:
            frame[:, bit * BLOCK : (bit + 1) * BLOCK] = 255
    return frame


def _read_index(frame: np.ndarray) -> int:
    centre = frame[4:-4].reshape(BLOCK - 8, BITS, BLOCK, 3)[:, :, 4:-4].mean(axis=(0, 2, 3))
    return int(sum(1 << bit for bit in range(BITS) if centre[bit] > 128))


def _nearest(source_times: np.ndarray, num_frames: int) -> list[int]:
    """Independent reference: nearest source frame to each grid time, ties to the earlier."""
    grid = np.arange(num_frames) * FRAME_PERIOD
    dist = np.abs(source_times[None, :] - grid[:, None])
    return [int(np.flatnonzero(np.isclose(d, d.min(), atol=1e-9))[0]) for d in dist]


@pytest.mark.parametrize(
    ("fps", "count", "grid"), [(25, 50, 50), (30, 60, 50), (24, 48, 50), (50, 100, 50)]
)
def test_grid_mapping_constant_rate(tmp_path, fps, count, grid):
    path = tmp_path / f"v{fps}.mp4"
    write_mp4(path, (_index_frame(k) for k in range(count)), fps=fps)
    assert count_grid_frames(path) == grid
    got = [_read_index(f) for f in iter_grid_frames(path)]
    assert got == _nearest(np.arange(count) / fps, grid)
    if fps == 25:
        assert got == list(range(50))
    if fps == 30:  # by hand: 0.04 i vs k / 30
        assert got[:10] == [0, 1, 2, 4, 5, 6, 7, 8, 10, 11]
    if fps == 50:
        assert got == list(range(0, 100, 2))


def test_grid_mapping_variable_rate(tmp_path):
    times = np.array([0.0, 0.03, 0.05, 0.11, 0.2, 0.21, 0.33, 0.41])
    path = tmp_path / "vfr.mkv"
    write_mp4(path, (_index_frame(k) for k in range(len(times))), frame_times=times)
    # Last frame ends at 0.41 + 0.04 (the nominal 25 fps duration) -> 11.25 -> 11 grid frames.
    assert count_grid_frames(path) == 11
    got = [_read_index(f) for f in iter_grid_frames(path)]
    # By hand; 0.04 and 0.08 are ties (0.03/0.05, 0.05/0.11) that go to the earlier frame.
    assert got == [0, 1, 2, 3, 4, 4, 5, 6, 6, 6, 7]
    assert got == _nearest(times, 11)


def test_avi_container(tmp_path):
    path = tmp_path / "v.avi"
    write_mp4(path, (_index_frame(k) for k in range(30)), fps=25)
    assert [_read_index(f) for f in iter_grid_frames(path)] == list(range(30))


def test_num_frames_repeats_the_last_frame_or_stops_early(tmp_path):
    path = tmp_path / "v.mp4"
    write_mp4(path, (_index_frame(k) for k in range(10)), fps=25)
    assert [_read_index(f) for f in iter_grid_frames(path, num_frames=13)] == list(range(10)) + [
        9
    ] * 3
    assert [_read_index(f) for f in iter_grid_frames(path, num_frames=4)] == [0, 1, 2, 3]
    frames = list(iter_grid_frames(path, num_frames=12))
    frames[10][:] = 7  # each repeat is its own array
    assert _read_index(frames[11]) == 9


def test_frames_are_rgb_and_streamed(tmp_path):
    path = tmp_path / "red.mp4"
    colour = np.array([200, 30, 60], np.uint8)
    write_mp4(path, (np.broadcast_to(colour, (48, 64, 3)) for _ in range(5)), fps=25)
    frames = iter_grid_frames(path)
    assert isinstance(frames, types.GeneratorType)
    first = next(frames)
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8
    np.testing.assert_allclose(first.reshape(-1, 3).mean(axis=0), colour, atol=4)
    assert len(list(frames)) == 4


def test_probe_video_with_audio(tmp_path):
    path = tmp_path / "av.mp4"
    write_mp4(
        path,
        (_index_frame(k) for k in range(75)),
        fps=30,
        audio=speech_samples(2.5, 44_100),
        audio_rate=44_100,
    )
    info = probe_media(path)
    assert (info.has_audio, info.has_video) == (True, True)
    assert (info.audio_rate, info.audio_channels) == (44_100, 1)
    assert (info.fps, info.width, info.height) == (30.0, BITS * BLOCK, BLOCK)
    assert info.video_duration_s == pytest.approx(2.5)
    assert info.audio_duration_s == pytest.approx(2.5, abs=0.03)
    assert info.grid_frames == 63  # 2.5 s = 62.5 grid periods, halves round up
    assert info.path == str(path)


def test_grid_frame_rounding(tmp_path):
    # 2.5 s -> 62.5 grid periods: halves round up. 2.52 s -> 63.
    path = tmp_path / "a.wav"
    write_wav(path, np.zeros(int(2.5 * SAMPLE_RATE), np.float32), SAMPLE_RATE)
    info = probe_media(path)
    assert (info.has_audio, info.has_video, info.fps, info.width) == (True, False, None, None)
    assert info.duration_s == pytest.approx(2.5) and info.grid_frames == 63
    write_wav(path, np.zeros(int(2.51 * SAMPLE_RATE), np.float32), SAMPLE_RATE)
    assert probe_media(path).grid_frames == 63
    write_wav(path, np.zeros(int(2.49 * SAMPLE_RATE), np.float32), SAMPLE_RATE)
    assert probe_media(path).grid_frames == 62


def test_astronaut_video_truth_follows_the_face(tmp_path):
    truth = astronaut_face_video(
        tmp_path / "face.mp4", seconds=1.0, size=(320, 240), face_from=0.2, face_until=0.6
    )
    assert truth.grid_frames == 25 and count_grid_frames(truth.path) == 25
    present = truth.grid_present
    assert present.tolist() == [False] * 5 + [True] * 10 + [False] * 10
    frames = list(iter_grid_frames(truth.path))
    background = frames[0].astype(float)
    for i in (5, 14):
        x0, y0, x1, y1 = np.round(truth.grid_boxes[i]).astype(int)
        diff = np.abs(frames[i].astype(float) - background).mean(axis=2)
        assert diff[y0:y1, x0:x1].mean() > 30  # the face is where the truth says
        assert np.isnan(truth.grid_boxes[20]).all()
    np.testing.assert_allclose(probe_media(truth.path).audio_duration_s, 1.0, atol=0.03)


@pytest.mark.parametrize(
    "func", [probe_media, count_grid_frames, lambda p: next(iter_grid_frames(p))]
)
def test_missing_and_corrupt_files(tmp_path, func):
    with pytest.raises(MediaError, match=r"gone\.mp4: no such"):
        func(tmp_path / "gone.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match=r"junk\.mp4"):
        func(junk)


@pytest.mark.parametrize("func", [count_grid_frames, lambda p: next(iter_grid_frames(p))])
def test_no_video_stream(tmp_path, func):
    path = tmp_path / "voice.wav"
    write_wav(path, np.zeros(1600, np.float32), SAMPLE_RATE)
    with pytest.raises(MediaError, match=r"voice\.wav: has no video stream"):
        func(path)


def test_write_mp4_rejects_odd_sizes_and_bad_frames_atomically(tmp_path):
    with pytest.raises(MediaError, match=r"odd\.mp4: .*even width and height, got 33x32"):
        write_mp4(tmp_path / "odd.mp4", [np.zeros((32, 33, 3), np.uint8)])
    with pytest.raises(ValueError, match="frame 2 has shape"):
        write_mp4(
            tmp_path / "mixed.mp4",
            [np.zeros((32, 32, 3), np.uint8)] * 2 + [np.zeros((16, 16, 3), np.uint8)],
        )
    with pytest.raises(ValueError, match="RGB uint8"):
        write_mp4(tmp_path / "float.mp4", [np.zeros((32, 32, 3), np.float32)])

    def dies():
        yield np.zeros((32, 32, 3), np.uint8)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        write_mp4(tmp_path / "killed.mp4", dies())
    assert list(tmp_path.iterdir()) == []  # neither finished files nor temporaries

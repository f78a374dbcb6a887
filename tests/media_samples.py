"""Real media files with known contents for the tests of several modules.

    from media_samples import speech_wav, astronaut_face_video, recola_fixture

* ``speech_samples`` / ``speech_wav``: real speech synthesised by Debian's
  ``espeak-ng`` (tests are skipped, with the reason, where it is missing).
* ``astronaut_face_video``: scikit-image's astronaut photograph, cropped around
  her head, drifting slowly over a noisy grey background, with speech as its
  sound track; the face can be left out before ``face_from`` and from
  ``face_until`` on. Returns :class:`FaceVideoTruth` with the face box and
  five landmarks of every frame.
* ``recola_fixture``: a small folder laid out like the AVEC 2016 release of
  RECOLA, with known gold-standard values.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from emorec.media.audio import read_audio
from emorec.media.write import write_mp4, write_wav
from emorec.schema import FRAME_PERIOD, SAMPLE_RATE

DEFAULT_TEXT = (
    "Emotion recognition from speech and faces. The quick brown fox jumps over the lazy dog."
)

# Measured once with MTCNN (mtcnn 0.26) on skimage.data.astronaut(): the face box
# [x0, y0, x1, y1] and landmarks (left eye, right eye, nose, mouth left, mouth
# right) in the 512 x 512 photograph's pixels.
PHOTO_FACE_BOX = np.array([182.0, 64.0, 265.0, 171.0])
PHOTO_LANDMARKS = np.array(
    [[204.0, 100.0], [245.0, 102.0], [224.0, 126.0], [202.0, 139.0], [244.0, 140.0]]
)
# The part of the photograph pasted into the videos: her head with some margin.
PHOTO_CROP = (123, 18, 323, 218)  # x0, y0, x1, y1


def _need_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng) - no real speech")
    return exe


@functools.lru_cache(maxsize=16)
def _speech(text: str, rate: int) -> np.ndarray:
    exe = _need_espeak()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-w", str(wav), text], check=True, capture_output=True)
        samples = read_audio(wav, target_rate=rate)
    peak = float(np.max(np.abs(samples))) or 1.0
    return (0.5 * samples / peak).astype(np.float32)


def speech_samples(seconds: float, rate: int = SAMPLE_RATE, text: str = DEFAULT_TEXT) -> np.ndarray:
    """Float32 mono speech (peak 0.5) of exactly ``round(seconds * rate)`` samples, the phrase repeated."""
    speech = _speech(text, int(rate))
    n = int(round(seconds * rate))
    return np.resize(speech, n).astype(np.float32)


def speech_wav(
    path,
    text: str = DEFAULT_TEXT,
    rate: int = SAMPLE_RATE,
    seconds: float | None = None,
    channels: int = 1,
) -> np.ndarray:
    """Write espeak-ng speech as a 16-bit wav (own length, or ``seconds``); return the samples written."""
    samples = _speech(text, int(rate)) if seconds is None else speech_samples(seconds, rate, text)
    data = samples if channels == 1 else np.repeat(samples[:, None], channels, axis=1)
    write_wav(path, data, rate)
    return samples


@dataclasses.dataclass
class FaceVideoTruth:
    """Ground truth of an :func:`astronaut_face_video`, per encoded video frame.

    ``boxes (n, 4)`` [x0, y0, x1, y1] and ``landmarks (n, 5, 2)`` are in frame
    pixels (NaN where ``present`` is False); ``audio`` is the track written
    (float32 mono at ``audio_rate``) or None.
    """

    path: Path
    fps: float
    size: tuple[int, int]
    frame_times: np.ndarray
    present: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    audio: np.ndarray | None
    audio_rate: int

    @property
    def grid_frames(self) -> int:
        """40 ms grid frames covering the video."""
        return int(math.floor(len(self.frame_times) / self.fps / FRAME_PERIOD + 0.5))

    def grid_index(self) -> np.ndarray:
        """Video frame shown at each grid frame (nearest presentation time, ties to the earlier)."""
        grid = np.arange(self.grid_frames) * FRAME_PERIOD
        later = np.clip(
            np.searchsorted(self.frame_times, grid, side="right"), 1, len(self.frame_times) - 1
        )
        before = later - 1
        pick_later = (self.frame_times[later] - grid) < (grid - self.frame_times[before])
        return np.where(pick_later, later, before)

    @property
    def grid_present(self) -> np.ndarray:
        """Face present at each grid frame."""
        return self.present[self.grid_index()]

    @property
    def grid_boxes(self) -> np.ndarray:
        """Face box at each grid frame."""
        return self.boxes[self.grid_index()]

    @property
    def grid_landmarks(self) -> np.ndarray:
        """Landmarks at each grid frame."""
        return self.landmarks[self.grid_index()]


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def astronaut_face_video(
    path,
    seconds: float = 2.0,
    fps: float = 25,
    size: tuple[int, int] = (640, 480),
    with_audio: bool = True,
    face_from: float = 0.0,
    face_until: float | None = None,
    audio_rate: int = SAMPLE_RATE,
    seed: int = 0,
) -> FaceVideoTruth:
    """Write an mp4 of the astronaut's head (``size`` = width, height) drifting over noise; return its truth."""
    from skimage.data import astronaut

    width, height = size
    photo = astronaut()
    x0, y0, x1, y1 = PHOTO_CROP
    # Shrink the head for small frames so it always fits with room to move.
    scale = min(1.0, 0.75 * height / (y1 - y0), 0.75 * width / (x1 - x0))
    head = _resize(photo[y0:y1, x0:x1], scale) if scale < 1.0 else photo[y0:y1, x0:x1].copy()
    hh, hw = head.shape[:2]
    box_in_head = (PHOTO_FACE_BOX - [x0, y0, x0, y0]) * scale
    marks_in_head = (PHOTO_LANDMARKS - [x0, y0]) * scale

    rng = np.random.default_rng(seed)
    background = np.clip(rng.normal(110, 12, size=(height, width, 3)), 0, 255).astype(np.uint8)
    n = int(round(seconds * fps))
    times = np.arange(n) / fps
    until = math.inf if face_until is None else face_until
    present = (times >= face_from) & (times < until)
    # Slow drift, a few percent of the frame each way.
    left = np.round((width - hw) / 2 + 0.05 * width * np.sin(2 * np.pi * 0.5 * times)).astype(int)
    top = np.round((height - hh) / 2 + 0.04 * height * np.sin(2 * np.pi * 0.3 * times)).astype(int)
    boxes = np.full((n, 4), np.nan)
    landmarks = np.full((n, 5, 2), np.nan)
    offsets = np.stack([left, top], axis=1).astype(np.float64)
    boxes[present] = box_in_head + np.tile(offsets[present], 2)
    landmarks[present] = marks_in_head[None] + offsets[present][:, None, :]

    def frames():
        for k in range(n):
            frame = background.copy()
            if present[k]:
                frame[top[k] : top[k] + hh, left[k] : left[k] + hw] = head
            yield frame

    audio = speech_samples(seconds, audio_rate) if with_audio else None
    write_mp4(path, frames(), fps=fps, audio=audio, audio_rate=audio_rate)
    return FaceVideoTruth(
        path=Path(path),
        fps=float(fps),
        size=(width, height),
        frame_times=times,
        present=present,
        boxes=boxes,
        landmarks=landmarks,
        audio=audio,
        audio_rate=audio_rate,
    )


@dataclasses.dataclass
class RecolaFixtureRecording:
    """One recording of :func:`recola_fixture`: its files and its gold standard (None for test)."""

    recording_id: str
    partition: str
    audio_path: Path
    video_path: Path | None
    arousal_path: Path | None
    valence_path: Path | None
    times: np.ndarray | None
    arousal: np.ndarray | None
    valence: np.ndarray | None
    audio: np.ndarray


@dataclasses.dataclass
class RecolaFixture:
    """A RECOLA-format folder and what it holds, keyed by recording id."""

    root: Path
    recordings: dict[str, RecolaFixtureRecording]


def write_gold_arff(path, recording_id: str, times, values) -> None:
    """Write an AVEC 2016 gold-standard ARFF exactly as released (one row per label)."""
    lines = [
        "@relation GoldStandard",
        "",
        "@attribute Instance_name string",
        "@attribute frameTime numeric",
        "@attribute GoldStandard numeric",
        "",
        "@data",
        "",
    ]
    lines += [f"{recording_id},{t:.6f},{v:.6f}" for t, v in zip(times, values)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def gold_values(recording_index: int, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixture's known arousal and valence at ``times`` (rounded to the ARFF's 6 decimals)."""
    arousal = 0.1 * recording_index + 0.3 * np.sin(2 * np.pi * 0.5 * times)
    valence = -0.2 + 0.05 * recording_index + 0.2 * np.cos(2 * np.pi * 0.25 * times)
    return np.round(arousal, 6), np.round(valence, 6)


def recola_fixture(
    root,
    recordings: tuple[str, ...] = ("train_1", "train_2", "dev_1", "test_1"),
    seconds: float = 2.0,
    audio_rate: int = 44_100,
    video_size: tuple[int, int] | None = (320, 240),
    fps: float = 25,
) -> RecolaFixture:
    """Write a RECOLA folder as AVEC 2016 ships it (wav, mp4, gold-standard ARFFs but none for test).

    Gold-standard rows run every 40 ms from 0 to ``seconds`` inclusive (7501
    rows for 300 s); recording ``k`` (its position in ``recordings``) has the
    values of :func:`gold_values`. ``video_size=None`` writes no videos.
    """
    root = Path(root)
    out = {}
    for index, recording_id in enumerate(recordings):
        partition = recording_id.split("_")[0]
        audio_path = root / "recordings_audio" / f"{recording_id}.wav"
        audio_path.parent.mkdir(parents=True, exist_ok=True)
        audio = speech_wav(audio_path, rate=audio_rate, seconds=seconds)
        video_path = None
        if video_size is not None:
            video_path = root / "recordings_video" / f"{recording_id}.mp4"
            astronaut_face_video(
                video_path,
                seconds=seconds,
                fps=fps,
                size=video_size,
                audio_rate=audio_rate,
                seed=index,
            )
        times = arousal = valence = arousal_path = valence_path = None
        if partition != "test":
            times = np.arange(int(round(seconds / FRAME_PERIOD)) + 1) * FRAME_PERIOD
            arousal, valence = gold_values(index, times)
            gold = root / "ratings_gold_standard"
            arousal_path = gold / "arousal" / f"{recording_id}.arff"
            valence_path = gold / "valence" / f"{recording_id}.arff"
            write_gold_arff(arousal_path, recording_id, times, arousal)
            write_gold_arff(valence_path, recording_id, times, valence)
        out[recording_id] = RecolaFixtureRecording(
            recording_id,
            partition,
            audio_path,
            video_path,
            arousal_path,
            valence_path,
            times,
            arousal,
            valence,
            audio,
        )
    return RecolaFixture(root, out)

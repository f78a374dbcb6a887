"""One recording (audio and/or video and/or labels) turned into 40 ms frames, streaming.

Shared by the TFRecord build (:mod:`emorec.corpus.build`) and by
prediction on new media. :func:`prepare_recording` counts the audio's samples
and the video's frames, tracks the face (cached per video) and reconciles the
lengths of the streams; :meth:`PreparedRecording.frames` then decodes the
audio and the video as it goes, so no modality of a recording is ever held
whole and the memory of a build does not grow with the recording's length.

The audio is read in two streaming passes: the first (in
:func:`prepare_recording`) decodes it to count its samples, and with
``audio_norm: recording`` also resamples it to accumulate the mean and
variance of the whole recording; the second (in ``frames``) decodes and
resamples it again, block by block, into normalised 640-sample frames. Both
give exactly what reading the whole signal would (:func:`read_audio`,
:func:`normalize_audio`, :func:`frame_audio`), up to float32 rounding of the
mean and variance.

Length reconciliation: the reference length is the audio's frame count when
audio is among the modalities, else the video's. A video or label track that is
shorter or longer by at most ``tolerance_s`` is padded (the last video frame
or the last label is held) or trimmed, and a line saying so goes into the
report; a larger difference raises :class:`AlignmentError` naming the files
and both lengths.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emorec.errors import AlignmentError, ConfigError, LabelError, MediaError

# DEFAULT_AUDIO_NORM is "none": the original code fed the raw waveform and the
# reported numbers come from it; "recording" is the paper's standardisation.
from emorec.media.audio import AUDIO_NORMS, DEFAULT_AUDIO_NORM
from emorec.schema import (
    DEFAULT_FACE_SIZE,
    DEFAULT_LABEL_ALIGNMENT,
    FRAME_PERIOD,
    FRAME_SAMPLES,
    LABEL_ALIGNMENTS,
    MODALITIES,
    NUM_LANDMARKS,
    PARTITIONS,
    SAMPLE_RATE,
)
from emorec.windows import Frame, RecordingInfo, black_jpeg, check_window, seconds_to_frames

DEFAULT_WINDOW_S = 6.0
DEFAULT_TOLERANCE_S = 0.5
JPEG_QUALITY = 95


def _face_config():
    from emorec.media.faces import FaceConfig

    return FaceConfig()


@dataclasses.dataclass
class RecordingSource:
    """Where one recording's media and labels are; ``labels`` None = unlabelled."""

    recording_id: str
    partition: str
    subject_id: str
    audio: Path | None = None
    video: Path | None = None
    labels: object = None  # LabelTrack, a label CSV path, or None
    label_source: str | None = None  # where a LabelTrack came from, for messages

    def __post_init__(self):
        if self.partition not in PARTITIONS:
            raise ConfigError(
                f"recording {self.recording_id}: unknown partition {self.partition!r} "
                f"(expected one of {', '.join(PARTITIONS)})"
            )
        self.audio = Path(self.audio) if self.audio else None
        self.video = Path(self.video) if self.video else None
        if isinstance(self.labels, (str, os.PathLike)):
            self.labels = Path(self.labels)


@dataclasses.dataclass
class BuildOptions:
    """How recordings are turned into windows; stored in the dataset manifest."""

    window: float = DEFAULT_WINDOW_S
    hop: float | None = None  # None: same as the window (no overlap)
    face_size: int = DEFAULT_FACE_SIZE
    audio_norm: str = DEFAULT_AUDIO_NORM
    label_alignment: str = DEFAULT_LABEL_ALIGNMENT
    modalities: tuple[str, ...] = MODALITIES
    tolerance_s: float = DEFAULT_TOLERANCE_S
    face: object = dataclasses.field(default_factory=_face_config)

    def __post_init__(self):
        self.modalities = tuple(self.modalities)
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not self.modalities:
            raise ConfigError(
                f"modalities must be a non-empty subset of {', '.join(MODALITIES)}, "
                f"got {', '.join(self.modalities) or 'none'}"
            )
        # Canonical order so that "video,audio" and "audio,video" are the same build.
        self.modalities = tuple(m for m in MODALITIES if m in self.modalities)
        if self.audio_norm not in AUDIO_NORMS:
            raise ConfigError(
                f"unknown audio_norm {self.audio_norm!r} (expected one of {', '.join(AUDIO_NORMS)})"
            )
        if self.label_alignment not in LABEL_ALIGNMENTS:
            raise ConfigError(
                f"unknown label_alignment {self.label_alignment!r} "
                f"(expected one of {', '.join(LABEL_ALIGNMENTS)})"
            )
        if self.face_size < 8:
            raise ConfigError(f"face_size must be at least 8 pixels, got {self.face_size}")
        if self.tolerance_s < 0:
            raise ConfigError(f"tolerance must be >= 0 s, got {self.tolerance_s}")
        check_window(self.window_frames, self.hop_frames)

    @property
    def window_frames(self) -> int:
        """Frames per window (150 for 6 s)."""
        return seconds_to_frames(self.window, "window")

    @property
    def hop_frames(self) -> int:
        """Frames between window starts."""
        return self.window_frames if self.hop is None else seconds_to_frames(self.hop, "hop")

    def manifest_options(self, source: str) -> dict:
        """The ``options`` block of the manifest for a build from adapter ``source``."""
        face = dataclasses.asdict(self.face) if dataclasses.is_dataclass(self.face) else {}
        return {
            "window": float(self.window),
            "hop": float(self.hop_frames * FRAME_PERIOD),
            "window_frames": self.window_frames,
            "hop_frames": self.hop_frames,
            "face_size": int(self.face_size),
            "audio_norm": self.audio_norm,
            "label_alignment": self.label_alignment,
            "modalities": list(self.modalities),
            "source": source,
            "tolerance_s": float(self.tolerance_s),
            # Only stored with video: the detector settings change the crops.
            "face_detection": face if "video" in self.modalities else None,
        }


def label_track(source: RecordingSource):
    """The recording's LabelTrack (reading a CSV path), checked; None if unlabelled."""
    from emorec.media.labels import LabelTrack, read_label_csv

    labels = source.labels
    if labels is None:
        return None
    if isinstance(labels, Path):
        if not labels.is_file():
            raise LabelError(f"{labels}: no such label file (recording {source.recording_id})")
        labels = read_label_csv(labels)
    if not isinstance(labels, LabelTrack):
        raise ConfigError(f"recording {source.recording_id}: labels must be a LabelTrack or a path")
    name = _label_name(source)
    times = np.asarray(labels.times, dtype=np.float64)
    values = np.asarray(labels.values, dtype=np.float64)
    if len(times) == 0:
        raise LabelError(f"{name}: the label track is empty")
    if values.shape != (len(times), 2):
        raise LabelError(f"{name}: label values have shape {values.shape}, expected ({len(times)}, 2)")
    if not np.all(np.isfinite(times)) or not np.all(np.isfinite(values)):
        row = int(np.argmax(~np.isfinite(values).all(axis=1) | ~np.isfinite(times)))
        raise LabelError(f"{name}: NaN or inf in the labels (row {row}, time {times[row]})")
    if np.any(np.diff(times) <= 0):
        row = int(np.argmax(np.diff(times) <= 0)) + 1
        raise LabelError(
            f"{name}: label times are not increasing (row {row}: {times[row]} after {times[row - 1]})"
        )
    return labels


def _label_name(source: RecordingSource) -> str:
    if isinstance(source.labels, Path):
        return str(source.labels)
    return source.label_source or f"(labels of recording {source.recording_id})"


def label_frames(times: np.ndarray, alignment: str) -> int:
    """Frames a label track covers: frame i needs the label at 0.04 (i + 1) ("end") or 0.04 i."""
    last = int(np.floor(float(times[-1]) / FRAME_PERIOD + 0.5))
    return last if alignment == "end" else last + 1


@dataclasses.dataclass
class _Stream:
    """One stream's length, for the reconciliation."""

    name: str  # "audio", "video", "labels"
    path: str
    frames: int


# Frames of audio decoded and resampled at a time (1 s).
_AUDIO_BLOCK_FRAMES = 25


@dataclasses.dataclass
class AudioPlan:
    """Where a recording's audio comes from and how it is normalised; read when streamed."""

    path: Path
    samples: int  # at SAMPLE_RATE, as read_audio would return them
    mean: float | None = None  # set for audio_norm "recording"
    std: float | None = None


class PreparedRecording:
    """A recording whose lengths are reconciled, ready to stream its frames."""

    def __init__(self, source, options, num_frames, audio, labels, video_frames, faces, report):
        self.source = source
        self.options = options
        self.num_frames = num_frames
        self.audio_plan = audio  # AudioPlan or None
        self.labels = labels  # (num_frames, 2) float32 or None
        self.video_frames = video_frames  # the video's own frame count
        self.faces = faces  # FaceTrack or None
        self.report = report

    @property
    def info(self) -> RecordingInfo:
        """What every window of this recording shares."""
        return RecordingInfo(
            recording_id=self.source.recording_id,
            subject_id=self.source.subject_id,
            partition=self.source.partition,
            has_audio=self.audio_plan is not None,
            has_video=self.faces is not None,
            has_labels=self.labels is not None,
            face_size=self.options.face_size,
        )

    def frames(self, progress: bool = False) -> Iterator[Frame]:
        """Yield the recording's frames in order, decoding the video as it goes."""
        from tqdm import tqdm

        video = self._faces() if self.faces is not None else None
        audio = self._audio_frames() if self.audio_plan is not None else None
        with tqdm(
            total=self.num_frames,
            desc=self.source.recording_id,
            unit="frame",
            leave=False,
            disable=not progress,
        ) as bar:
            for i in range(self.num_frames):
                frame = Frame()
                if audio is not None:
                    frame.audio = next(audio)
                if video is not None:
                    frame.face, frame.face_found, frame.landmarks = next(video)
                if self.labels is not None:
                    frame.labels = self.labels[i]
                bar.update(1)
                yield frame

    @property
    def audio(self) -> np.ndarray | None:
        """All the audio frames ``(num_frames, 640)`` float32, or None: holds the whole recording."""
        if self.audio_plan is None:
            return None
        return np.stack(list(self._audio_frames())).reshape(self.num_frames, FRAME_SAMPLES)

    def _audio_frames(self) -> Iterator[np.ndarray]:
        """The normalised 640-sample audio frames, decoded and resampled a block at a time.

        The samples past ``num_frames`` are dropped and the missing ones are
        zeros after normalisation, as ``frame_audio(normalize_audio(...))`` gives.
        """
        from emorec.media.audio import iter_audio_blocks, standardize

        plan = self.audio_plan
        total = self.num_frames * FRAME_SAMPLES
        done = 0
        if total:
            for block in iter_audio_blocks(plan.path, SAMPLE_RATE, _AUDIO_BLOCK_FRAMES * FRAME_SAMPLES):
                block = block[: total - done]
                if plan.mean is not None:
                    block = standardize(block, plan.mean, plan.std)
                done += len(block)
                short = -len(block) % FRAME_SAMPLES
                if short:
                    block = np.concatenate((block, np.zeros(short, np.float32)))
                yield from block.reshape(-1, FRAME_SAMPLES)
                if done >= total:
                    break
        if done != min(total, plan.samples):
            raise MediaError(
                f"{plan.path}: gave {done} audio samples on the second reading, "
                f"{min(total, plan.samples)} on the first; did the file change?"
            )
        for _ in range(-(-done // FRAME_SAMPLES), self.num_frames):
            yield np.zeros(FRAME_SAMPLES, np.float32)

    def _faces(self) -> Iterator[tuple[bytes, int, np.ndarray]]:
        """Face crop JPEG, found flag and crop landmarks per frame, one decoded frame at a time."""
        import cv2

        from emorec.media.faces import crop_face
        from emorec.media.video import iter_grid_frames

        size = self.options.face_size
        track = self.faces
        last = len(track.found) - 1
        blank = np.zeros((NUM_LANDMARKS, 2), np.float32)
        for i, image in enumerate(iter_grid_frames(self.source.video, self.num_frames)):
            # Past the video's end the last frame is repeated, and so is its face.
            j = min(i, last)
            box = np.asarray(track.boxes[j], dtype=np.float64)
            points = np.asarray(track.landmarks[j], dtype=np.float64)
            found = int(track.found[j])
            if not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
                yield black_jpeg(size), 0, blank
                continue
            crop, crop_points = crop_face(image, box, points, size)
            ok, jpeg = cv2.imencode(
                ".jpg", np.ascontiguousarray(crop[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            if not ok:
                raise MediaError(f"{self.source.video}: could not JPEG-encode the face of frame {i}")
            landmarks = np.nan_to_num(np.asarray(crop_points, np.float32)).reshape(NUM_LANDMARKS, 2)
            yield jpeg.tobytes(), found, landmarks


def _audio_path(source: RecordingSource) -> Path:
    """The file the recording's audio comes from (its audio file, else its video's sound track)."""
    from emorec.media.video import probe_media

    if source.audio is not None:
        return source.audio
    if source.video is None:
        raise MediaError(
            f"recording {source.recording_id}: audio requested but it has neither an audio "
            "file nor a video"
        )
    if not probe_media(source.video).has_audio:
        raise MediaError(
            f"{source.video}: has no audio stream and recording {source.recording_id} has no "
            "audio file; give one or build with --modalities video"
        )
    return source.video


def _scan_audio(path: Path, audio_norm: str):
    """First audio pass: the sample count, and for "recording" the moments of the whole frames and the tail.

    The moments of the last partial frame are left to the caller, who knows
    (after reconciliation) how much of it the recording keeps.
    """
    from emorec.media.audio import Moments, audio_sample_count, iter_audio_blocks

    if audio_norm == "none":
        return audio_sample_count(path, SAMPLE_RATE), None, None
    moments = Moments()
    samples = 0
    tail = np.zeros(0, np.float32)
    # Blocks are whole frames but for the last, so only the last can leave a tail.
    for block in iter_audio_blocks(path, SAMPLE_RATE, _AUDIO_BLOCK_FRAMES * FRAME_SAMPLES):
        samples += len(block)
        whole = len(block) // FRAME_SAMPLES * FRAME_SAMPLES
        moments.add(block[:whole])
        tail = block[whole:]
    return samples, moments, tail


def _reconcile(reference: _Stream, other: _Stream, tolerance_s: float, recording_id: str) -> str | None:
    """Check one stream against the reference length; a report line, or None if equal."""
    diff = other.frames - reference.frames
    if diff == 0:
        return None
    seconds = abs(diff) * FRAME_PERIOD
    lengths = (
        f"{other.name} {other.path} covers {other.frames * FRAME_PERIOD:.2f} s ({other.frames} "
        f"frames), {reference.name} {reference.path} {reference.frames * FRAME_PERIOD:.2f} s "
        f"({reference.frames} frames)"
    )
    if seconds > tolerance_s + 1e-9:
        raise AlignmentError(
            f"recording {recording_id}: {lengths}: they differ by {seconds:.2f} s, more than "
            f"the {tolerance_s} s tolerance (--tolerance)"
        )
    action = "trimmed" if diff > 0 else (
        "padded by repeating its last frame" if other.name == "video" else "padded by holding its last value"
    )
    return f"{recording_id}: {lengths}; {other.name} {action} ({abs(diff)} frames)"


def prepare_recording(
    source: RecordingSource,
    options: BuildOptions,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> PreparedRecording:
    """Read audio and labels, track the face, reconcile lengths; raise on bad input."""
    from emorec.media.labels import labels_for_frames
    from emorec.media.video import count_grid_frames, grid_frames_for

    rid = source.recording_id
    use_audio = "audio" in options.modalities
    use_video = "video" in options.modalities
    for path in (source.audio if use_audio else None, source.video, source.labels):
        if isinstance(path, Path) and not path.is_file():
            raise MediaError(f"{path}: no such file (recording {rid})")
    if use_video and source.video is None:
        raise MediaError(f"recording {rid}: video requested but the recording has no video file")

    labels = label_track(source)
    streams: list[_Stream] = []
    audio = None
    if use_audio:
        path = _audio_path(source)
        samples, moments, tail = _scan_audio(path, options.audio_norm)
        audio = AudioPlan(path, samples)
        streams.append(_Stream("audio", str(path), grid_frames_for(samples / SAMPLE_RATE)))
    video_frames = 0
    if use_video:
        video_frames = count_grid_frames(source.video)
        streams.append(_Stream("video", str(source.video), video_frames))
    reference = streams[0]
    if reference.frames == 0:
        raise MediaError(f"{reference.path}: too short for one {FRAME_PERIOD} s frame (recording {rid})")
    if labels is not None:
        times = np.asarray(labels.times, dtype=np.float64)
        first_needed = FRAME_PERIOD if options.label_alignment == "end" else 0.0
        if times[0] - first_needed > options.tolerance_s + 1e-9:
            raise AlignmentError(
                f"{_label_name(source)}: labels start at {times[0]:.2f} s, the first frame needs "
                f"one at {first_needed:.2f} s; more than the {options.tolerance_s} s tolerance"
            )
        streams.append(_Stream("labels", _label_name(source), label_frames(times, options.label_alignment)))

    report = [
        line
        for other in streams[1:]
        if (line := _reconcile(reference, other, options.tolerance_s, rid)) is not None
    ]
    num_frames = reference.frames

    if audio is not None and moments is not None:
        # Audio is the reference length whenever it is used, so the recording
        # keeps every whole frame counted and at most the tail's start.
        keep = min(audio.samples, num_frames * FRAME_SAMPLES) - moments.count
        if keep < 0:
            raise AssertionError(f"recording {rid}: audio shorter than its own frame count")
        moments.add(tail[:keep])
        audio.mean, audio.std = moments.mean, moments.std
    label_values = None
    if labels is not None:
        label_values = np.asarray(
            labels_for_frames(labels, num_frames, options.label_alignment), dtype=np.float32
        )
    faces = None
    if use_video:
        from emorec.media.faces import load_or_track_faces

        faces = load_or_track_faces(source.video, options.face, cache_dir, progress=progress)
    return PreparedRecording(source, options, num_frames, audio, label_values, video_frames, faces, report)


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

Feature sets (``BuildOptions.features``) may read the audio or the video
without storing them; such media count for the lengths as if stored. With
neither audio nor video (released feature files alone) the reference length
is the labels' frame count, else the first released feature file's.

Length reconciliation: the reference length is the audio's frame count when
audio is read, else the video's. A video or label track that is
shorter or longer by at most ``tolerance_s`` is padded (the last video frame
or the last label is held) or trimmed, and a line saying so goes into the
report; a larger difference raises :class:`AlignmentError` naming the files
and both lengths.

Values are checked at their source, before anything is written: NaN or
infinity in the audio (every decoded block, :mod:`emorec.media.audio`), in
the face detections or in the labels is an error naming the file and the
first sample, frame or row; so are labels outside ``BuildOptions.label_range``
and, with ``audio_norm`` "none" (the waveform stored as read), an audio peak
beyond ``audio_peak_limit``. A peak above full scale within the limit and a
DC offset are report lines. See docs/data_format.md, *Values the build
refuses or reports*.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emorec.alignment import Stream, label_frames, reconcile
from emorec.errors import AlignmentError, ConfigError, LabelError, MediaError
from emorec.manifest import DEFAULT_LABEL_RANGE

# DEFAULT_AUDIO_NORM is "none": the original code fed the raw waveform and the
# reported numbers come from it; "recording" is the paper's standardisation.
from emorec.media.audio import AUDIO_NORMS, DEFAULT_AUDIO_NORM
from emorec.media.files import file_problem
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
# With --audio-norm none the waveform is stored as read, and the format says [-1, 1]. Decoded
# integer PCM never leaves it; float files and lossy codecs can overshoot a little (clipped
# material decodes slightly beyond full scale), so the build reports peaks up to this limit
# and refuses larger ones, which mean a wrong scale (float samples in PCM units, a gain).
DEFAULT_AUDIO_PEAK_LIMIT = 1.5
# A mean sample value beyond this (2% of full scale) is reported as a DC offset.
DC_OFFSET_REPORT = 0.02


def _face_config():
    from emorec.media.faces import FaceConfig

    return FaceConfig()


def _feature_options():
    from emorec.features.sets import FeatureOptions

    return FeatureOptions()


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
    features: dict[str, Path] | None = None  # released feature set -> its ARFF file

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
    # The range labels must lie in (the build refuses others): RECOLA's gold standard is in [-1, 1].
    label_range: tuple[float, float] = DEFAULT_LABEL_RANGE
    # Largest |sample| accepted with audio_norm "none" (an acceptance threshold; not stored).
    audio_peak_limit: float = DEFAULT_AUDIO_PEAK_LIMIT
    # Feature sets stored per frame (emorec.features.sets.FeatureOptions).
    features: object = dataclasses.field(default_factory=_feature_options)

    def __post_init__(self):
        self.modalities = tuple(self.modalities)
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not (self.modalities or self.features.requested):
            raise ConfigError(
                f"modalities must be a non-empty subset of {', '.join(MODALITIES)} (or none when feature "
                f"sets are stored), got {', '.join(self.modalities) or 'none'}"
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
        low, high = (float(v) for v in self.label_range)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ConfigError(f"label range must be two finite numbers LOW < HIGH, got {self.label_range}")
        self.label_range = (low, high)
        if not self.audio_peak_limit >= 1.0:
            raise ConfigError(
                f"audio peak limit must be at least 1.0 (full scale), got {self.audio_peak_limit}"
            )
        check_window(self.window_frames, self.hop_frames)

    @property
    def window_frames(self) -> int:
        """Frames per window (150 for 6 s)."""
        return seconds_to_frames(self.window, "window")

    @property
    def hop_frames(self) -> int:
        """Frames between window starts."""
        return self.window_frames if self.hop is None else seconds_to_frames(self.hop, "hop")

    @property
    def reads_audio(self) -> bool:
        """The build decodes the audio (stored, or read by a feature extractor)."""
        return "audio" in self.modalities or self.features.needs_audio

    @property
    def reads_video(self) -> bool:
        """The build decodes the video and tracks its face (stored, or read by a feature extractor)."""
        return "video" in self.modalities or self.features.needs_video

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
            "face_detection": face if self.reads_video else None,
        } | label_range_option(self.label_range) | (
            {"features": self.features.manifest_options()} if self.features.requested else {})


def label_range_option(label_range) -> dict:
    """The manifest's ``label_range`` option: stored only when it is not the default [-1, 1].

    Datasets built before the option existed (all within [-1, 1]) keep options
    equal to a new default build's, so they resume rather than rebuild.

    Args:
        label_range: ``(low, high)`` of the gold labels.

    Returns:
        ``{}`` for the default range, else ``{"label_range": [low, high]}`` as floats.

    >>> label_range_option((-1.0, 1.0)), label_range_option((0, 10))
    ({}, {'label_range': [0.0, 10.0]})
    """
    low, high = (float(v) for v in label_range)
    return {} if (low, high) == DEFAULT_LABEL_RANGE else {"label_range": [low, high]}


def label_track(source: RecordingSource, label_range=DEFAULT_LABEL_RANGE):
    """The recording's LabelTrack (reading a CSV path), checked; None if unlabelled.

    Args:
        source: the recording.
        label_range: ``(low, high)``; a label value outside it is an error.

    Returns:
        The LabelTrack, or None for an unlabelled recording.

    Raises:
        LabelError: a missing or malformed track, NaN or inf, times not increasing,
            or values outside ``label_range``.
    """
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
    _check_label_range(name, times, values, label_range)
    return labels


def _check_label_range(name: str, times: np.ndarray, values: np.ndarray, label_range) -> None:
    """LabelError naming the first value outside ``label_range``, its time and the track's span."""
    low, high = label_range
    outside = (values < low) | (values > high)
    if not outside.any():
        return
    row = int(np.argmax(outside.any(axis=1)))
    column = int(np.argmax(outside[row]))
    dimension = ("arousal", "valence")[column]
    raise LabelError(
        f"{name}: {dimension} {values[row, column]:g} at {times[row]:g} s (row {row}) is outside "
        f"the label range [{low:g}, {high:g}] ({int(outside.sum())} values are; the track spans "
        f"arousal {values[:, 0].min():.4g} to {values[:, 0].max():.4g}, valence "
        f"{values[:, 1].min():.4g} to {values[:, 1].max():.4g}); emorec expects labels in [-1, 1] "
        "like RECOLA's gold standard: rescale them, or build with --label-range LOW,HIGH if this "
        "corpus uses another scale"
    )


def _label_name(source: RecordingSource) -> str:
    if isinstance(source.labels, Path):
        return str(source.labels)
    return source.label_source or f"(labels of recording {source.recording_id})"


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
    def stores_audio(self) -> bool:
        """The audio is stored (not only read by a feature extractor)."""
        return self.audio_plan is not None and "audio" in self.options.modalities

    @property
    def stores_video(self) -> bool:
        """The face crops are stored (not only read by a feature extractor)."""
        return self.faces is not None and "video" in self.options.modalities

    @property
    def info(self) -> RecordingInfo:
        """What every window of this recording shares."""
        return RecordingInfo(
            recording_id=self.source.recording_id,
            subject_id=self.source.subject_id,
            partition=self.source.partition,
            has_audio=self.stores_audio,
            has_video=self.stores_video,
            has_labels=self.labels is not None,
            face_size=self.options.face_size,
        )

    def frames(self, progress: bool = False) -> Iterator[Frame]:
        """Yield the recording's frames in order, decoding the stored media as it goes."""
        from tqdm import tqdm

        video = self._faces() if self.stores_video else None
        audio = self._audio_frames() if self.stores_audio else None
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
            if not (np.all(np.isfinite(box)) and np.all(np.isfinite(points))):
                raise MediaError(
                    f"{self.source.video}: NaN or inf in the face box or landmarks of frame {j} "
                    f"({j * FRAME_PERIOD:.2f} s)"
                )
            if box[2] <= box[0] or box[3] <= box[1]:
                yield black_jpeg(size), 0, blank
                continue
            crop, crop_points = crop_face(image, box, points, size)
            ok, jpeg = cv2.imencode(
                ".jpg", np.ascontiguousarray(crop[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            if not ok:
                raise MediaError(f"{self.source.video}: could not JPEG-encode the face of frame {i}")
            landmarks = np.asarray(crop_points, np.float32).reshape(NUM_LANDMARKS, 2)
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


def _scan_audio(path: Path, audio_norm: str, peak_limit: float, recording_id: str):
    """First audio pass: the sample count, report lines, and for "recording" the moments of the whole frames and the tail.

    With ``audio_norm`` "none" the waveform is stored as read, so its level is
    checked here, before anything is written: a peak beyond ``peak_limit`` is
    an error, a peak above full scale or a DC offset a report line. The
    moments of the last partial frame are left to the caller, who knows
    (after reconciliation) how much of it the recording keeps.
    """
    from emorec.media.audio import AudioLevels, Moments, audio_sample_count, iter_audio_blocks

    if audio_norm == "none":
        levels = AudioLevels()
        samples = audio_sample_count(path, SAMPLE_RATE, levels)
        return samples, None, None, _level_report(path, levels, peak_limit, recording_id)
    moments = Moments()
    samples = 0
    tail = np.zeros(0, np.float32)
    # Blocks are whole frames but for the last, so only the last can leave a tail.
    for block in iter_audio_blocks(path, SAMPLE_RATE, _AUDIO_BLOCK_FRAMES * FRAME_SAMPLES):
        samples += len(block)
        whole = len(block) // FRAME_SAMPLES * FRAME_SAMPLES
        moments.add(block[:whole])
        tail = block[whole:]
    return samples, moments, tail, []


def _level_report(path: Path, levels, peak_limit: float, recording_id: str) -> list[str]:
    """Report lines on the raw waveform's level; MediaError for a peak beyond ``peak_limit``."""
    dc = f", and a DC offset of {levels.mean:.3g}" if abs(levels.mean) > DC_OFFSET_REPORT else ""
    if levels.peak > peak_limit:
        raise MediaError(
            f"{path}: audio peak {levels.peak:.4g} at {levels.peak_time:.3f} s is outside full scale "
            f"[-1, 1] by more than the limit {peak_limit:g}{dc}; with --audio-norm none the waveform "
            "is stored as read: rescale the file to [-1, 1], build with --audio-norm recording "
            "(per-recording standardisation, which does not depend on the scale), or raise "
            "--audio-peak-limit"
        )
    report = []
    if levels.peak > 1.0:
        report.append(
            f"{recording_id}: audio {path} peaks at {levels.peak:.4g} ({levels.peak_time:.3f} s), "
            "above full scale 1.0; stored as read"
        )
    if dc:
        report.append(
            f"{recording_id}: audio {path} has a DC offset of {levels.mean:.3g} (mean sample); "
            "stored as read (--audio-norm recording removes it)"
        )
    return report


def _features_stream(source: RecordingSource, labels, options: BuildOptions) -> Stream:
    """The reference length without audio or video: the labels', else the first released feature file's."""
    if labels is not None:
        times = np.asarray(labels.times, dtype=np.float64)
        return Stream("labels", _label_name(source), label_frames(times, options.label_alignment))
    if not source.features:
        raise MediaError(f"recording {source.recording_id}: no audio, video, labels or feature files to build from")
    from emorec.features.arff import read_feature_arff

    path = next(iter(source.features.values()))
    table = read_feature_arff(path, fill=options.features.fill)
    return Stream("features", str(path), label_frames(np.asarray(table.times), options.label_alignment))


def prepare_recording(
    source: RecordingSource,
    options: BuildOptions,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> PreparedRecording:
    """Read audio and labels, track the face, reconcile lengths; raise on bad input.

    Nothing is decoded in full here: audio is scanned for its length and statistics, video
    frames are counted and faces tracked (or read from ``cache_dir``).

    Args:
        source: the recording's files and ids.
        options: the build options (modalities, alignment, tolerance, audio and face settings).
        cache_dir: cache for face tracks, or None.
        progress: show a progress bar while tracking faces.

    Returns:
        The :class:`PreparedRecording`: frame count, audio plan and statistics, per-frame labels,
        face track and the length-reconciliation report.

    Raises:
        MediaError: a missing, empty or unreadable file, video requested without a video file,
            or a recording shorter than one frame.
        LabelError: unusable labels.
        AlignmentError: labels that start too late, or streams whose lengths differ by more
            than the tolerance.
    """
    from emorec.media.labels import labels_for_frames
    from emorec.media.video import count_grid_frames, grid_frames_for

    rid = source.recording_id
    use_audio = options.reads_audio
    use_video = options.reads_video
    for path in (source.audio if use_audio else None, source.video, source.labels):
        problem = file_problem(path, allow_empty=path is source.labels) if isinstance(path, Path) else None
        if problem is not None:
            problem = "no such file" if problem == "does not exist" else problem
            raise MediaError(f"{path}: {problem} (recording {rid})")
    if use_video and source.video is None:
        raise MediaError(f"recording {rid}: video requested but the recording has no video file")

    labels = label_track(source, options.label_range)
    streams: list[Stream] = []
    audio = None
    level_report: list[str] = []
    if use_audio:
        path = _audio_path(source)
        samples, moments, tail, level_report = _scan_audio(
            path, options.audio_norm, options.audio_peak_limit, rid
        )
        audio = AudioPlan(path, samples)
        streams.append(Stream("audio", str(path), grid_frames_for(samples / SAMPLE_RATE)))
    video_frames = 0
    if use_video:
        video_frames = count_grid_frames(source.video)
        streams.append(Stream("video", str(source.video), video_frames))
    if not streams:
        streams.append(_features_stream(source, labels, options))
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
        if streams[0].name != "labels":
            streams.append(Stream("labels", _label_name(source), label_frames(times, options.label_alignment)))

    report = level_report + [
        line
        for other in streams[1:]
        if (line := reconcile(reference, other, options.tolerance_s, rid)) is not None
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


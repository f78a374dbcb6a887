"""The embedded demo CLIP corpus: short AFEW-style clips whose face and voice follow one of 7 classes.

``write_demo_clips(out_dir)`` writes real media laid out exactly as AFEW::

    OUT/Train_AFEW/<Class>/<id>.avi
    OUT/Val_AFEW/<Class>/<id>.avi
    OUT/Test_AFEW/<id>.avi           (only with test_clips > 0; unlabelled)
    OUT/clips.csv                    (clip,partition,subject,video,label; written last)

so that the AFEW adapter and the clips-CSV adapter both read it.

Each clip is 1.5-3 s of one drawn subject (:mod:`emorec.demo.face`) talking
(:mod:`emorec.demo.speech`). The class sets how the expression moves over the
clip (its dynamics, not one fixed pose) and how the voice sounds:

=========  ==================================================  ==========================================
class      face (from neutral, as the expression sets in)      voice (arousal / valence of the synthesis)
=========  ==================================================  ==========================================
Angry      brows down and drawn together, eyes narrowed,       loud, high, fast (arousal 0.85), dark
           lips pressed thin; rises over 0.25-0.6 s
Disgust    upper lip raised on one side, nose wrinkled,        quiet and falling over the clip, darkest
           brows lowered, eyes narrowed; rises
Fear       eyes wide, brows up with inner ends raised,         raised with a 6 Hz tremor, dark
           mouth stretched sideways; rises
Happy      smile spreading, eyes narrowing; rises              lively: arousal swinging at 1.5 Hz, bright
Neutral    small random drift of brows, eyes and mouth         flat (arousal 0), neutral
Sad        mouth corners down, inner brows up, eyes            low, slow, soft (arousal -0.8)
           drooping; rises slowly
Surprise   brows and eyes jump open and the mouth drops to     jumps from calm to loud at the onset, then
           an "O" within 0.08 s, then ease off a little        decays
=========  ==================================================  ==========================================

Every clip draws its intensity (0.75-1), onset, rise time, speaking noise and
head placement; subjects (skin, hair, background, light, voice) differ
between the partitions' subject pools, so a model must learn the expression
and the voice, not who is shown. Everything is drawn from per-clip random
streams of the seed: the files are the same for any ``jobs``.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import io
import multiprocessing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emorec.clips.source import EMOTIONS
from emorec.demo.face import (
    Expression,
    Pose,
    backdrop,
    draw_face,
    finish_frame,
    palette_for,
    random_motion,
)
from emorec.demo.spec import DemoSpec, Subject, make_subjects
from emorec.demo.speech import synthesize_speech
from emorec.errors import ConfigError
from emorec.manifest import atomic_write_bytes
from emorec.media.write import write_avi, write_mp4
from emorec.schema import FRAME_PERIOD

TRAIN_DIR = "Train_AFEW"
VAL_DIR = "Val_AFEW"
TEST_DIR = "Test_AFEW"
CLIPS_CSV = "clips.csv"
CLIPS_CSV_COLUMNS = ("clip", "partition", "subject", "video", "label")
CONTAINERS = ("avi", "mp4")

_NEUTRAL_EYES = 0.7
# Face parameters at the apex of each class, as changes from the neutral face.
_APEX = {
    "Angry": dict(brow_raise=-1.1, brow_inner=-1.0, eye_open=-0.2, smile=-0.25, mouth_width=-0.6),
    "Disgust": dict(sneer=1.0, brow_raise=-0.45, eye_open=-0.25, smile=-0.35, mouth_width=-0.2),
    "Fear": dict(eye_open=0.65, brow_raise=0.9, brow_inner=1.0, mouth_width=1.0, smile=-0.45, mouth_open=0.35),
    "Happy": dict(smile=1.0, eye_open=-0.2, brow_raise=0.15, mouth_width=0.3, mouth_open=0.15),
    "Neutral": {},
    "Sad": dict(smile=-1.0, brow_inner=1.0, brow_raise=-0.2, eye_open=-0.35, mouth_width=-0.2),
    "Surprise": dict(brow_raise=1.5, eye_open=0.75, mouth_open=1.0, mouth_width=-0.6),
}
# How the speech drives the mouth on top of the expression (tight lips speak less openly).
_TALK = {"Angry": 0.3, "Disgust": 0.45, "Sad": 0.45}
_DEFAULT_TALK = 0.6
_FACE_KEYS = ("eye_open", "brow_raise", "smile", "mouth_open", "brow_inner", "mouth_width", "sneer")
_NOISE = 0.06  # amplitude of the slow wobble on every face parameter
_NEUTRAL_DRIFT = 0.12

# Random streams of one clip (independent, so that e.g. a change in the speech
# synthesis does not change the face).
_STREAM_DYNAMICS, _STREAM_SPEECH, _STREAM_MOTION = 1, 2, 3
_CLIP_STREAM_TAG = 7  # keeps the clips' streams apart from the regression demo's


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """Size and format of the demo clip corpus.

    The defaults (24 training and 8 validation clips per class, 168 + 56
    clips of 1.5-3 s, 192 x 144 at 25 fps, 12 + 4 subjects) are written in
    about half a minute on two cores and are enough for a small classifier to
    pass 0.8 validation accuracy in minutes.
    """

    classes: tuple[str, ...] = EMOTIONS
    train_per_class: int = 24
    val_per_class: int = 8
    test_clips: int = 0
    train_subjects: int = 12
    val_subjects: int = 4
    test_subjects: int = 2
    min_seconds: float = 1.5
    max_seconds: float = 3.0
    fps: float = 25.0
    width: int = 192
    height: int = 144
    audio_rate: int = 44_100
    container: str = "avi"

    def __post_init__(self):
        unknown = [c for c in self.classes if c not in _APEX]
        if unknown or not self.classes or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"ClipSpec: classes must be distinct names from {', '.join(EMOTIONS)}, got {self.classes!r}")
        counts = (self.train_per_class, self.val_per_class, self.test_clips)
        if min(counts) < 0 or self.train_per_class + self.val_per_class + self.test_clips == 0:
            raise ConfigError(f"ClipSpec: clip counts must be >= 0 and not all 0, got {counts}")
        for clips, subjects, name in ((self.train_per_class, self.train_subjects, "train"),
                                      (self.val_per_class, self.val_subjects, "val"),
                                      (self.test_clips, self.test_subjects, "test")):
            if clips and subjects < 1:
                raise ConfigError(f"ClipSpec: {name} clips need at least one {name} subject")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ConfigError(f"ClipSpec: need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}")
        if self.width % 2 or self.height % 2 or self.width < 64 or self.height < 48:
            raise ConfigError(f"ClipSpec: video size must be even and at least 64x48, got {self.width}x{self.height}")
        if not self.fps > 0 or int(self.audio_rate) != self.audio_rate or self.audio_rate < 8000:
            raise ConfigError(f"ClipSpec: fps must be > 0 and audio_rate an integer >= 8000 Hz, got {self.fps}, {self.audio_rate}")
        if self.container not in CONTAINERS:
            raise ConfigError(f"ClipSpec: container must be one of {', '.join(CONTAINERS)}, got {self.container!r}")


@dataclasses.dataclass(frozen=True)
class DemoClip:
    """One planned clip: where it goes, its class and subject, and its random-stream index."""

    clip_id: str
    partition: str  # "train", "dev" or "test"
    label: str
    subject: Subject
    index: int

    def relpath(self, container: str) -> str:
        """Path of its video inside the corpus folder (AFEW layout)."""
        name = f"{self.clip_id}.{container}"
        if self.partition == "test":
            return f"{TEST_DIR}/{name}"
        return f"{TRAIN_DIR if self.partition == 'train' else VAL_DIR}/{self.label}/{name}"


def plan_clips(spec: ClipSpec, seed: int) -> list[DemoClip]:
    """Every clip of the corpus: class, subject (cycling through the partition's pool) and id.

    Args:
        spec: the corpus size.
        seed: the corpus seed (it draws the subjects).

    Returns:
        The clips, train then dev then test; ids are 6-digit numbers unique in the corpus.
    """
    pools = dict(train=spec.train_subjects, dev=spec.val_subjects, test=spec.test_subjects)
    subjects = make_subjects(DemoSpec(subjects=tuple(pools.items())), seed)
    by_partition = {p: [s for s in subjects if s.partition == p] for p in pools}
    clips = []
    for partition, per_class in (("train", spec.train_per_class), ("dev", spec.val_per_class)):
        for c, label in enumerate(spec.classes):
            for k in range(per_class):
                pool = by_partition[partition]
                # Every subject shows every class (when the pool allows), in turn.
                subject = pool[(c + k * len(spec.classes)) % len(pool)]
                clips.append((partition, label, subject))
    for j in range(spec.test_clips):
        pool = by_partition["test"]
        clips.append(("test", spec.classes[j % len(spec.classes)], pool[j % len(pool)]))
    return [
        DemoClip(clip_id=f"{i + 1:06d}", partition=p, label=label, subject=subject, index=i)
        for i, (p, label, subject) in enumerate(clips)
    ]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclasses.dataclass(frozen=True)
class ClipDynamics:
    """How one clip's expression and voice unfold: class, intensity, timing and wobble."""

    label: str
    duration: float
    intensity: float
    onset: float  # s
    rise: float  # s
    sneer_side: float  # -1 or 1
    wobble_freq: np.ndarray  # (7, 2) Hz
    wobble_phase: np.ndarray  # (7, 2)
    voice_offset: np.ndarray  # (2,) arousal, valence
    voice_phase: float

    def envelope(self, times) -> np.ndarray:
        """How far the expression has set in, 0..1, at ``times`` (s)."""
        t = np.asarray(times, dtype=np.float64)
        if self.label == "Neutral":
            return np.zeros_like(t)
        rise = _smoothstep((t - self.onset) / self.rise)
        if self.label == "Surprise":
            # A sudden jump, then easing off towards the end of the clip.
            late = np.clip((t - self.onset) / max(self.duration - self.onset, 1e-6), 0.0, 1.0)
            return rise * (1.0 - 0.25 * late)
        return rise

    def face(self, times) -> np.ndarray:
        """``(len(times), 7)`` face parameters in :data:`_FACE_KEYS` order."""
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        env = self.intensity * self.envelope(t)
        apex = dict(_APEX[self.label])
        if "sneer" in apex:
            apex["sneer"] *= self.sneer_side
        values = np.zeros((len(t), len(_FACE_KEYS)))
        values[:, 0] = _NEUTRAL_EYES
        for k, key in enumerate(_FACE_KEYS):
            values[:, k] += apex.get(key, 0.0) * env
        amplitude = _NEUTRAL_DRIFT if self.label == "Neutral" else _NOISE
        wobble = np.sin(2 * np.pi * self.wobble_freq[None] * t[:, None, None] + self.wobble_phase[None])
        values += amplitude * wobble.mean(axis=-1)
        values[:, 3] = np.clip(values[:, 3], 0.0, 1.0)  # mouth opening
        values[:, 6] = values[:, 6] if self.label == "Disgust" else 0.0  # only disgust sneers
        return values

    def __call__(self, times) -> np.ndarray:
        """Arousal and valence of the voice ``(len(times), 2)``: the curve speech synthesis follows."""
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        k = self.intensity
        arousal, valence = {
            "Angry": (0.85 * k + 0 * t, -0.6),
            "Disgust": (-0.1 - 0.4 * k * t / self.duration, -0.8),
            "Fear": (0.55 * k + 0.3 * np.sin(2 * np.pi * 6.0 * t + self.voice_phase), -0.5),
            "Happy": (0.45 * k + 0.25 * np.sin(2 * np.pi * 1.5 * t + self.voice_phase), 0.8),
            "Neutral": (0.0 * t, 0.0),
            "Sad": (-0.8 * k + 0 * t, -0.4),
            "Surprise": (-0.1 + 1.1 * k * self.envelope(t), 0.3),
        }[self.label]
        voice = np.stack([arousal + self.voice_offset[0], valence + self.voice_offset[1] + 0 * t], axis=1)
        return np.clip(voice, -1.0, 1.0)


def draw_dynamics(label: str, duration: float, rng: np.random.Generator) -> ClipDynamics:
    """Draw one clip's intensity, timing and wobble for class ``label``.

    Args:
        label: the clip's class name (``Surprise`` and ``Sad`` get their own timing).
        duration: the clip's length in seconds.
        rng: the generator to draw from (the same state draws the same dynamics).

    Returns:
        The :class:`ClipDynamics`.

    >>> a = draw_dynamics("Happy", 2.0, np.random.default_rng(1))
    >>> b = draw_dynamics("Happy", 2.0, np.random.default_rng(1))
    >>> a.onset == b.onset and 0.0 <= a.onset <= 0.4 and 0.75 <= a.intensity <= 1.0
    True
    """
    surprise = label == "Surprise"
    return ClipDynamics(
        label=label,
        duration=duration,
        intensity=float(rng.uniform(0.75, 1.0)),
        onset=float(duration * rng.uniform(0.1, 0.3) if surprise else duration * rng.uniform(0.0, 0.2)),
        rise=float(0.08 if surprise else (rng.uniform(0.5, 0.9) if label == "Sad" else rng.uniform(0.25, 0.6))),
        sneer_side=float(rng.choice([-1.0, 1.0])),
        wobble_freq=rng.uniform(0.3, 1.5, size=(len(_FACE_KEYS), 2)),
        wobble_phase=rng.uniform(0, 2 * np.pi, size=(len(_FACE_KEYS), 2)),
        voice_offset=rng.uniform(-0.08, 0.08, size=2),
        voice_phase=float(rng.uniform(0, 2 * np.pi)),
    )


def render_clip(clip: DemoClip, spec: ClipSpec, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Draw one clip: its RGB uint8 frames and its float32 mono audio at ``spec.audio_rate``.

    Args:
        clip: the planned clip.
        spec: the corpus format.
        seed: the corpus seed.

    Returns:
        ``(frames, audio)``.
    """
    def stream(kind):
        return np.random.default_rng([seed, _CLIP_STREAM_TAG, clip.index, kind])

    rng = stream(_STREAM_DYNAMICS)
    lo, hi = round(spec.min_seconds * spec.fps), round(spec.max_seconds * spec.fps)
    num_frames = int(rng.integers(lo, hi + 1))
    duration = num_frames / spec.fps
    dynamics = draw_dynamics(clip.label, duration, rng)
    audio, mouth = synthesize_speech(
        dynamics, clip.subject.voice, int(round(duration * spec.audio_rate)), spec.audio_rate,
        stream(_STREAM_SPEECH),
    )
    motion_rng = stream(_STREAM_MOTION)
    motion = random_motion(motion_rng)
    # Where the head sits in this clip (AFEW's faces are anywhere in the frame).
    place = motion_rng.uniform([-0.08, -0.05, -0.1, -6.0], [0.08, 0.05, 0.1, 6.0])
    look = clip.subject.look
    background, gain = backdrop(spec.width, spec.height, look, motion.side_light)
    colours = palette_for(look)
    times = np.arange(num_frames) / spec.fps
    face = dynamics.face(times)
    poses = motion.at(times)
    talk = _TALK.get(clip.label, _DEFAULT_TALK)
    frames = []
    for i, t in enumerate(times):
        dx, dy, roll, scale = poses[i]
        pose = Pose(
            cx=spec.width * (0.5 + dx + place[0]),
            cy=spec.height * (0.5 + dy + place[1]),
            radius=spec.height * look.head_scale * (1 + scale + place[2]),
            roll=roll + place[3],
        )
        values = dict(zip(_FACE_KEYS, face[i]))
        speaking = talk * mouth[min(int(t / FRAME_PERIOD), len(mouth) - 1)] if len(mouth) else 0.0
        values["mouth_open"] = max(values["mouth_open"], speaking)
        img = background.copy()
        draw_face(img, pose, Expression(**{k: float(v) for k, v in values.items()}), colours)
        frames.append(finish_frame(img, gain, 1.0))
    return frames, audio


def _write_clip(root: Path, clip: DemoClip, spec: ClipSpec, seed: int) -> dict:
    """Render and write one clip; return its clips.csv row."""
    frames, audio = render_clip(clip, spec, seed)
    relpath = clip.relpath(spec.container)
    if spec.container == "avi":
        write_avi(root / relpath, frames, fps=spec.fps, audio=audio, audio_rate=spec.audio_rate)
    else:
        write_mp4(root / relpath, frames, fps=spec.fps, audio=audio, audio_rate=spec.audio_rate)
    return {
        "clip": clip.clip_id,
        "partition": clip.partition,
        "subject": clip.subject.subject_id,
        "video": relpath,
        "label": "" if clip.partition == "test" else clip.label,
    }


def write_demo_clips(out_dir, *, spec: ClipSpec | None = None, seed: int = 0, jobs: int = 1,
                     progress: bool = True) -> Path:
    """Write the demo clip corpus in the AFEW layout plus ``clips.csv``; return the CSV's path.

    Args:
        out_dir: the corpus folder (created).
        spec: the corpus size and format (default :class:`ClipSpec`).
        seed: draws subjects, classes' dynamics, voices and motion; same seed, same files.
        jobs: processes writing clips (the files do not depend on it).
        progress: show a progress bar.

    Returns:
        The path of ``clips.csv``, written last and atomically: its presence means the corpus is complete.

    Raises:
        ConfigError: ``out_dir`` is a file or ``jobs`` < 1.
    """
    spec = spec or ClipSpec()
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: the demo clip corpus needs a directory, this is a file")
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    root.mkdir(parents=True, exist_ok=True)
    clips = plan_clips(spec, seed)
    with tqdm(total=len(clips), desc="demo clips", unit="clip", disable=not progress) as bar:
        if jobs == 1 or len(clips) <= 1:
            rows = []
            for clip in clips:
                rows.append(_write_clip(root, clip, spec, seed))
                bar.update(1)
        else:
            # spawn, not fork: the caller may already run TensorFlow's thread pools.
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(min(jobs, len(clips)), mp_context=context) as pool:
                futures = [pool.submit(_write_clip, root, c, spec, seed) for c in clips]
                try:
                    for future in concurrent.futures.as_completed(futures):
                        future.result()
                        bar.update(1)
                except BaseException:
                    pool.shutdown(cancel_futures=True)
                    raise
                rows = [future.result() for future in futures]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CLIPS_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = root / CLIPS_CSV
    atomic_write_bytes(path, text.getvalue().encode())
    return path

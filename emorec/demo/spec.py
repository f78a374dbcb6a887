"""Settings of the demo corpus and the per-subject voice and look drawn from a seed."""

from __future__ import annotations

import dataclasses

import numpy as np

from emorec.schema import FRAME_PERIOD, PARTITIONS, SAMPLE_RATE


@dataclasses.dataclass(frozen=True)
class DemoSpec:
    """Size of the demo corpus: subjects per partition, recording length and video format.

    The defaults (8 recordings of 30 s, 4 minutes in all, 192x144 video) keep
    generation to seconds and the TFRecord build well under a minute on two
    cores, while giving a model enough frames to learn the label-to-media map.

    Raises:
        ValueError: on creation, for an unknown partition or negative count, a video size
            that is odd or under 64x48, a length that is not a positive multiple of the
            40 ms frame period, or a frame rate other than 25 fps.
    """

    subjects: tuple[tuple[str, int], ...] = (("train", 4), ("dev", 2), ("test", 2))
    seconds: float = 30.0
    width: int = 192
    height: int = 144
    fps: int = 25
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self):
        for partition, count in self.subjects:
            if partition not in PARTITIONS or count < 0:
                raise ValueError(f"DemoSpec: bad partition entry {(partition, count)!r}")
        if self.width % 2 or self.height % 2 or self.width < 64 or self.height < 48:
            raise ValueError(f"DemoSpec: video size must be even and at least 64x48, got {self.width}x{self.height}")
        frames = self.seconds / FRAME_PERIOD
        if self.seconds <= 0 or abs(frames - round(frames)) > 1e-9:
            raise ValueError(f"DemoSpec: seconds must be a positive multiple of {FRAME_PERIOD}, got {self.seconds}")
        if abs(self.fps * FRAME_PERIOD - 1) > 1e-9:
            raise ValueError(f"DemoSpec: fps must be {1 / FRAME_PERIOD:g} so that frames sit on the label grid")

    @property
    def num_frames(self) -> int:
        """Video frames (and 40 ms label steps) per recording."""
        return int(round(self.seconds / FRAME_PERIOD))

    @property
    def num_samples(self) -> int:
        """Audio samples per recording."""
        return int(round(self.seconds * self.sample_rate))


@dataclasses.dataclass(frozen=True)
class Voice:
    """A subject's voice: base pitch, vocal-tract length (formant scale) and brightness."""

    f0: float  # Hz at neutral arousal
    formant_scale: float  # > 1 = shorter vocal tract, higher formants
    tilt: float  # one-pole low-pass coefficient on the glottal source (0 = bright)


@dataclasses.dataclass(frozen=True)
class Look:
    """A subject's look and lighting, RGB colours in 0..255."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    background_top: tuple[float, float, float]
    background_bottom: tuple[float, float, float]
    head_scale: float  # head half-width as a fraction of the frame height
    light: float  # overall brightness factor


@dataclasses.dataclass(frozen=True)
class Subject:
    """One synthetic subject with one recording."""

    recording_id: str
    partition: str
    subject_id: str
    index: int  # position in the corpus, used to derive its random streams
    voice: Voice
    look: Look


# No very pale tones: MTCNN's scores drop on bright, low-contrast faces.
_SKIN_TONES = (
    (212, 172, 142),
    (205, 158, 122),
    (175, 120, 85),
    (125, 85, 60),
    (198, 160, 130),
    (190, 140, 105),
)


def _colour(rng: np.random.Generator, low: float, high: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(low, high, size=3))


def make_subjects(spec: DemoSpec, seed: int) -> list[Subject]:
    """Draw every subject's voice and look; each subject has its own random stream.

    Subjects alternate male and female voices; subject ``index`` draws from
    ``default_rng([seed, index, 1])``, so adding subjects does not change earlier ones.

    Args:
        spec: the corpus size (subjects per partition, in order).
        seed: the corpus seed.

    Returns:
        The subjects in ``spec.subjects`` order, ids ``<partition>_<k>`` (``k`` from 1).

    >>> [s.recording_id for s in make_subjects(DemoSpec(subjects=(("train", 2), ("dev", 1))), 0)]
    ['train_1', 'train_2', 'dev_1']
    """
    subjects = []
    index = 0
    for partition, count in spec.subjects:
        for k in range(count):
            rng = np.random.default_rng([seed, index, 1])
            female = bool(index % 2)
            voice = Voice(
                f0=float(rng.uniform(190, 230) if female else rng.uniform(100, 130)),
                formant_scale=float(rng.uniform(1.08, 1.18) if female else rng.uniform(0.92, 1.02)),
                tilt=float(rng.uniform(0.55, 0.7)),
            )
            skin = np.array(_SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))], dtype=float)
            skin = np.clip(skin + rng.uniform(-12, 12, size=3), 0, 255)
            look = Look(
                skin=tuple(float(c) for c in skin),
                hair=_colour(rng, 20, 90),
                background_top=_colour(rng, 60, 200),
                background_bottom=_colour(rng, 30, 160),
                head_scale=float(rng.uniform(0.23, 0.27)),
                light=float(rng.uniform(0.8, 1.05)),
            )
            subjects.append(
                Subject(
                    recording_id=f"{partition}_{k + 1}",
                    partition=partition,
                    subject_id=f"demo_{partition}_{k + 1}",
                    index=index,
                    voice=voice,
                    look=look,
                )
            )
            index += 1
    return subjects

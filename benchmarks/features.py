"""Speed of the hand-crafted feature extractors on ONE core (feature_lstm inputs).

    python benchmarks/features.py [--quick] [--seconds 120] [--repeats 3]

Pins itself to one CPU (``sched_setaffinity``) and one BLAS / OpenMP thread
before numpy is imported, then times on the same audio, in the same run:

* ``audio_lld``: emorec's own 76 IS10 LLDs (``extract_audio_lld``) on
  espeak-ng speech (``tests/media_samples.py``; a phrase repeated to
  ``--seconds``) and on a fully voiced synthetic vowel (the worst case for
  jitter and shimmer: periods are measured in every frame);
* ``opensmile``: the same 76 LLDs by openSMILE (``emorec[opensmile]``, its
  patched IS10 config with 40 ms frames, through the ``opensmile`` Python
  package; skipped when it is not installed);
* ``functionals``: the 14 functionals of the 76 tracks over 3 s windows;
* ``LGBP-TOP``: the ``video_appearance`` extractor (8 Gabor filters, 22,656
  dims before the PCA) on 96 x 96 face crops of scikit-image's astronaut
  drifting over noise (``tests/media_samples.py``, at most 10 s of video);
* ``dlib landmarks``: the 68-point shape predictor on the same 640 x 480
  frames with the face box given (skipped without dlib or its model);
* the peak of Python-tracked memory (``tracemalloc``) of ``extract_audio_lld``
  for 1 minute and for ``--seconds``, less the output array: it must not grow
  with the recording.

It prints, per case, seconds of media, best time, real-time factor (seconds
of media per second of compute) and frames per second (40 ms frames), then
the ratio of audio_lld's real-time factor to openSMILE's. The ratio is the
figure to compare across machines; the absolute factors depend on the
machine and its load.

Adding a case: write a function ``case_xxx(media: Media, repeats: int) ->
list[Result]`` and add it to :data:`CASES`; ``main`` runs and prints every
case in order. For the video cases "media s" is the video's length, so the
real-time factor and frames/s read the same way as for audio.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

# One core: thread pools must be sized before numpy / scipy load their BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
import scipy  # noqa: E402

from emorec.features.audio_lld import LLD_NAMES, extract_audio_lld  # noqa: E402
from emorec.features.functionals import audio_functionals  # noqa: E402
from emorec.schema import FRAME_PERIOD, SAMPLE_RATE  # noqa: E402


@dataclasses.dataclass
class Media:
    """The inputs shared by the cases: 16 kHz speech and a voiced vowel of the same length."""

    speech: np.ndarray
    vowel: np.ndarray

    @property
    def seconds(self) -> float:
        return self.speech.size / SAMPLE_RATE


@dataclasses.dataclass
class Result:
    """One printed row: ``seconds`` of media processed in ``best`` seconds (best of the repeats)."""

    case: str
    seconds: float
    best: float
    median: float
    note: str = ""

    @property
    def realtime(self) -> float:
        return self.seconds / self.best

    @property
    def frames_per_second(self) -> float:
        return self.seconds / FRAME_PERIOD / self.best


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """``(best, median)`` wall time of ``repeats`` calls after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def voiced_vowel(seconds: float) -> np.ndarray:
    """Pulses at 220 Hz +- 10 % through a glottal tilt and three formants: voiced throughout."""
    from scipy.signal import lfilter

    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 220.0 * (1.0 + 0.1 * np.sin(2 * np.pi * 0.3 * t))
    phase = np.cumsum(f0) / SAMPLE_RATE
    pulses = np.diff(np.floor(phase), prepend=0.0)
    y = lfilter([1.0], [1.0, -0.9], pulses)
    for freq, bandwidth in ((800.0, 80.0), (1500.0, 90.0), (2800.0, 120.0)):
        r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
        y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * freq / SAMPLE_RATE), r * r], y)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


# -- cases --------------------------------------------------------------------------------------


def case_audio_lld(media: Media, repeats: int) -> list[Result]:
    """emorec's own LLDs on speech and on the all-voiced vowel."""
    rows = []
    for name, audio in (("audio_lld speech", media.speech), ("audio_lld voiced", media.vowel)):
        best, median = best_of(lambda a=audio: extract_audio_lld(a), repeats)
        voiced = float(np.mean(extract_audio_lld(audio)[:, LLD_NAMES.index("F0final_sma")] > 0))
        rows.append(Result(name, audio.size / SAMPLE_RATE, best, median, f"{voiced:.0%} voiced"))
    return rows


def case_opensmile(media: Media, repeats: int) -> list[Result]:
    """openSMILE's LLDs (patched IS10 config) on the same audio, if the extra is installed."""
    from emorec.features import opensmile_lld

    if not opensmile_lld.is_available():
        print("opensmile: not installed (pip install emorec[opensmile]) - rows skipped")
        return []
    import opensmile

    extractor = opensmile_lld.OpensmileLLD()
    rows = []
    for name, audio in (("opensmile speech", media.speech), ("opensmile voiced", media.vowel)):
        best, median = best_of(lambda a=audio: extractor(a), repeats)
        rows.append(
            Result(
                name, audio.size / SAMPLE_RATE, best, median, f"opensmile {opensmile.__version__}"
            )
        )
    return rows


def case_functionals(media: Media, repeats: int) -> list[Result]:
    """14 functionals x 76 tracks over centred 3 s windows, one row per frame."""
    lld = extract_audio_lld(media.speech)
    best, median = best_of(lambda: audio_functionals(lld), repeats)
    return [Result("functionals (76 x 14)", media.seconds, best, median, "from the speech LLDs")]


@functools.lru_cache(maxsize=1)
def _astronaut(seconds: float):
    """Grid frames, square face boxes (emorec's margin) and 96 x 96 crops of the astronaut video."""
    import tempfile

    from media_samples import astronaut_face_video

    from emorec.features.landmarks68 import DEFAULT_MARGIN
    from emorec.media.faces import crop_face, square_boxes
    from emorec.media.video import iter_grid_frames
    from emorec.schema import DEFAULT_FACE_SIZE

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "astronaut.mp4"
        truth = astronaut_face_video(path, seconds=seconds, size=(640, 480), with_audio=False)
        frames = list(iter_grid_frames(path))
    n = len(frames)
    centre, side = square_boxes(truth.grid_boxes[:n].astype(np.float64), DEFAULT_MARGIN)
    boxes = np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], axis=1)
    crops = [crop_face(f, b, np.zeros((5, 2)), DEFAULT_FACE_SIZE)[0] for f, b in zip(frames, boxes)]
    return frames, boxes, crops


def case_lgbp_top(media: Media, repeats: int) -> list[Result]:
    """LGBP-TOP of the face crops (video_appearance before its PCA)."""
    from emorec.features.lgbp_top import LgbpTop

    frames, _, crops = _astronaut(min(media.seconds, 10.0))
    extractor = LgbpTop()
    best, median = best_of(lambda: sum(len(v) for v in extractor.iter_vectors(crops)), repeats)
    return [Result("LGBP-TOP (video_app)", len(frames) * FRAME_PERIOD, best, median,
                   f"{extractor.dim} dims, 96x96 crops")]


def case_dlib(media: Media, repeats: int) -> list[Result]:
    """dlib's 68 landmarks (video_geometric's input) on full 640 x 480 frames, box given."""
    from emorec.errors import ConfigError
    from emorec.features.landmarks68 import LandmarkPredictor

    try:
        predictor = LandmarkPredictor()
    except ConfigError as exc:
        print(f"dlib landmarks: skipped ({exc})")
        return []
    frames, boxes, _ = _astronaut(min(media.seconds, 10.0))
    found = np.ones(len(frames), np.int8)
    best, median = best_of(lambda: predictor.predict_track(frames, boxes, found), repeats)
    return [Result("dlib 68 landmarks", len(frames) * FRAME_PERIOD, best, median, "640x480 frames, box given")]


CASES: list[Callable[[Media, int], list[Result]]] = [
    case_audio_lld,
    case_opensmile,
    case_functionals,
    case_lgbp_top,
    case_dlib,
]


def peak_memory_mib(audio: np.ndarray) -> float:
    """Peak numpy/Python allocation of ``extract_audio_lld`` less its output, in MiB."""
    tracemalloc.start()
    out = extract_audio_lld(audio)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - out.nbytes) / 2**20


def machine_line() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "all"
    return (
        f"machine: {cpu}, {os.cpu_count()} CPUs, pinned to {cores}, {load}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}"
    )


def main(argv=None) -> None:
    """Run every case and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="media length per case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 s of media, one timed repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = 20.0, 1

    from media_samples import speech_samples

    print(machine_line())
    media = Media(speech_samples(args.seconds), voiced_vowel(args.seconds))
    results = [row for case in CASES for row in case(media, args.repeats)]
    print(
        f"{'case':24s} {'media s':>8s} {'best s':>8s} {'median s':>9s} {'x real time':>12s} {'frames/s':>10s}"
    )
    for r in results:
        print(
            f"{r.case:24s} {r.seconds:8.1f} {r.best:8.3f} {r.median:9.3f} "
            f"{r.realtime:12.0f} {r.frames_per_second:10.0f}  {r.note}"
        )
    by_name = {r.case: r for r in results}
    for kind in ("speech", "voiced"):
        ours, theirs = by_name.get(f"audio_lld {kind}"), by_name.get(f"opensmile {kind}")
        if ours and theirs:
            print(
                f"audio_lld / opensmile real-time factor ({kind}): "
                f"{ours.realtime / theirs.realtime:.2f}"
            )
    short = peak_memory_mib(media.speech[: 60 * SAMPLE_RATE])
    full = peak_memory_mib(np.resize(media.speech, int(max(args.seconds, 300.0) * SAMPLE_RATE)))
    print(
        f"audio_lld peak memory less output: {short:.1f} MiB for 60 s, "
        f"{full:.1f} MiB for {max(args.seconds, 300.0):.0f} s"
    )


if __name__ == "__main__":
    main()

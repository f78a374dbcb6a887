"""Speed of the hand-made video features of ``feature_lstm``: LGBP-TOP, dlib landmarks, PCA.

    python benchmarks/features_video.py [--quick] [--seconds 10] [--size 96]

Writes a 640 x 480 video of scikit-image's astronaut (a real face) drifting
over noise (tests/media_samples.py), decodes its 40 ms grid frames into
memory once, and takes the face box of every frame from the video's ground
truth made square with emorec's margin (what ``FaceTrack`` holds), so that
only feature work is timed:

* ``dlib 68 landmarks``: ``LandmarkPredictor.predict_track`` on the full
  frames (dlib's shape predictor from Debian's libdlib-data; skipped with a
  note when dlib or the model is missing);
* ``geometric features``: 49-point alignment and the 286 features
  (``geometric_features``) of the predicted landmarks;
* ``LGBP-TOP``: ``LgbpTop.iter_vectors`` on the ``--size`` face crops, for
  the default bank (8 Gabor filters, 22,656 dims) and the AVEC-sized one
  (18 filters, 50,976 dims);
* ``PCA fit`` to 84 dims (randomized SVD) on the default LGBP-TOP vectors of
  ``--pca-frames`` frames (the crops repeated with noise), and ``PCA
  transform``.

Figures are frames per second (best of ``--repeats``) and the real-time factor
(frames/s ÷ 25).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import add_tests_to_path, machine_description, print_table  # noqa: E402

from emorec.errors import ConfigError  # noqa: E402
from emorec.features.geometric import fit_mean_shape, geometric_features  # noqa: E402
from emorec.features.landmarks68 import DEFAULT_MARGIN, LandmarkPredictor  # noqa: E402
from emorec.features.lgbp_top import AVEC_SIZED, LgbpTop, LgbpTopConfig, fit_pca  # noqa: E402
from emorec.media.faces import crop_face, square_boxes  # noqa: E402
from emorec.media.video import iter_grid_frames  # noqa: E402
from emorec.schema import DEFAULT_FACE_SIZE, FRAME_PERIOD  # noqa: E402

FRAME_SIZE = (640, 480)
FPS = 1.0 / FRAME_PERIOD


def best_seconds(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def row(name: str, frames: int, seconds: float, note: str = "") -> list:
    rate = frames / seconds
    return [name, frames, f"{seconds:.3f}", f"{rate:.1f}", f"{rate / FPS:.1f}", note]


def main(argv=None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s of video, one timed repeat")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=DEFAULT_FACE_SIZE, help="face crop size")
    parser.add_argument("--pca-frames", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats, args.pca_frames = 2.0, 1, 500

    add_tests_to_path()
    from media_samples import astronaut_face_video

    print(machine_description())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "astronaut.mp4"
        truth = astronaut_face_video(path, seconds=args.seconds, size=FRAME_SIZE, with_audio=False)
        frames = list(iter_grid_frames(path))
    n = len(frames)
    centre, side = square_boxes(truth.grid_boxes[:n].astype(np.float64), DEFAULT_MARGIN)
    boxes = np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], axis=1)
    found = np.ones(n, np.int8)
    crops = [crop_face(f, b, np.zeros((5, 2)), args.size)[0] for f, b in zip(frames, boxes)]
    print(f"video: {n} grid frames of {FRAME_SIZE[0]}x{FRAME_SIZE[1]}, face crops {args.size}x{args.size}")

    rows = []
    try:
        predictor = LandmarkPredictor()
    except ConfigError as exc:
        print(f"dlib landmarks skipped: {exc}")
        predictor = None
    if predictor is not None:
        seconds = best_seconds(lambda: predictor.predict_track(frames, boxes, found), args.repeats)
        rows.append(row("dlib 68 landmarks", n, seconds, "full frames, box given"))
        landmarks, ok = predictor.predict_track(frames, boxes, found)
        mean = fit_mean_shape(landmarks, ok)
        seconds = best_seconds(lambda: geometric_features(landmarks, ok, mean), args.repeats)
        rows.append(row("geometric features", n, seconds, "286 dims"))

    for name, config in (("LGBP-TOP default", LgbpTopConfig()), ("LGBP-TOP AVEC-sized", AVEC_SIZED)):
        extractor = LgbpTop(config)
        seconds = best_seconds(lambda e=extractor: sum(len(v) for v in e.iter_vectors(crops)), args.repeats)
        rows.append(row(name, n, seconds, f"{config.dim} dims, {config.num_filters} filters"))

    vectors = LgbpTop().transform(crops)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, n, args.pca_frames)
    noisy = vectors[picks] + rng.normal(0, 1e-3, (args.pca_frames, vectors.shape[1])).astype(np.float32)
    start = time.perf_counter()
    model = fit_pca(noisy, dims=84)
    fit_s = time.perf_counter() - start
    rows.append(row("PCA fit (randomized)", args.pca_frames, fit_s, f"{noisy.shape[1]} -> 84 dims"))
    seconds = best_seconds(lambda: model.transform(vectors, found), args.repeats)
    rows.append(row("PCA transform", n, seconds, ""))

    print_table(["stage", "frames", "seconds", "frames/s", "x real time", "note"], rows)


if __name__ == "__main__":
    main()

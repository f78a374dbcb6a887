"""Speed and agreement of the face pipeline against plain per-frame MTCNN.

    python benchmarks/faces.py [--seconds 10] [--detect-every 5] [--max-side 320] [--batch 8]

Writes a 640 x 480 video of scikit-image's astronaut (a real face) drifting
over noise, decodes its 40 ms grid frames into memory once (about 0.9 MB a
frame, 230 MB for 10 s) so that both methods are timed on face work only, then
times:

* pipeline: ``track_faces`` (MTCNN on downscaled keyframes, batched,
  interpolated, smoothed) followed by ``crop_face`` on every frame;
* plain: MTCNN on every full-resolution frame, the largest face squared with
  the same margin, then ``crop_face``.

It prints frames per second of both, their ratio (the figure that matters on
a shared machine) and how far the pipeline's crop boxes are from the plain
ones (centre and side, in pixels, over frames where both found the face).

Last, the pipeline's keyframe detection as emorec runs it (MTCNN's networks
traced, :mod:`emorec.media.mtcnn_graph`) against mtcnn's own eager calls, on
the same shrunk keyframes in batches of ``--batch``: the eager ÷ traced time
and the largest difference between their rows (0 when they agree exactly).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402

from emorec.media.faces import (  # noqa: E402
    FaceConfig,
    _shrink,
    crop_face,
    default_detector,
    detect_largest,
    square_boxes,
    track_faces,
)
from emorec.media.video import iter_grid_frames  # noqa: E402
from emorec.schema import DEFAULT_FACE_SIZE  # noqa: E402

FRAME_SIZE = (640, 480)


def plain_boxes(frames, detector, config: FaceConfig):
    """Per-frame full-resolution MTCNN: square boxes (holding the last one on a miss) and found flags."""
    boxes = np.zeros((len(frames), 4))
    found = np.zeros(len(frames), dtype=bool)
    last = None
    for i, frame in enumerate(frames):
        row = detect_largest(detector, [frame], config)[0]
        if row is not None:
            centre, side = square_boxes(row[None, :4], config.margin)
            last = np.concatenate([centre[0] - side[0] / 2, centre[0] + side[0] / 2])
            found[i] = True
        if last is not None:
            boxes[i] = last
    return boxes, found


def traced_against_eager(frames, detector, config: FaceConfig, repeats: int = 3) -> tuple[float, float, float]:
    """Keyframe detection with the traced detector and with a fresh eager MTCNN on the same batches.

    Returns:
        ``(traced_s, eager_s, max_abs_difference)``: the best of ``repeats`` passes each, and
        the largest difference between the two detectors' rows (None on both sides counts 0;
        a face found by only one of them counts inf).
    """
    from mtcnn import MTCNN

    keys = [_shrink(f, config.detect_max_side)[0] for f in frames[::config.detect_every]]
    batches = [keys[i:i + config.detect_batch] for i in range(0, len(keys), config.detect_batch)]
    eager = MTCNN()
    results, times = {}, {}
    for name, det in (("traced", detector), ("eager", eager)):
        detect_largest(det, batches[0], config)  # trace / build before timing
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            rows = [row for batch in batches for row in detect_largest(det, batch, config)]
            best = min(best, time.perf_counter() - start)
        results[name], times[name] = rows, best
    diff = 0.0
    for a, b in zip(results["traced"], results["eager"]):
        if (a is None) != (b is None):
            diff = float("inf")
        elif a is not None:
            diff = max(diff, float(np.abs(a - b).max()))
    return times["traced"], times["eager"], diff


def main(argv=None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--detect-every", type=int, default=FaceConfig.detect_every)
    parser.add_argument("--max-side", type=int, default=FaceConfig.detect_max_side)
    parser.add_argument("--batch", type=int, default=FaceConfig.detect_batch)
    parser.add_argument("--smoothing", type=int, default=FaceConfig.smoothing)
    parser.add_argument("--size", type=int, default=DEFAULT_FACE_SIZE, help="crop size")
    args = parser.parse_args(argv)
    config = FaceConfig(
        detect_every=args.detect_every, detect_max_side=args.max_side,
        detect_batch=args.batch, smoothing=args.smoothing,
    )

    from media_samples import astronaut_face_video

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "astronaut.mp4"
        astronaut_face_video(path, seconds=args.seconds, size=FRAME_SIZE, with_audio=False)
        start = time.perf_counter()
        frames = list(iter_grid_frames(path))
        decode_s = time.perf_counter() - start
    n = len(frames)
    print(f"video: {n} grid frames of {FRAME_SIZE[0]}x{FRAME_SIZE[1]}, decoded at {n / decode_s:.1f} frames/s")
    print(f"settings: {config.to_dict()}, crop {args.size}x{args.size}, CPU threads visible: {os.cpu_count()}")

    detector = default_detector()
    detect_largest(detector, [frames[0]], config)  # build the networks before timing
    detect_largest(detector, [frames[0][::2, ::2].copy()] * config.detect_batch, config)

    start = time.perf_counter()
    track = track_faces(iter(frames), config, detector=detector, progress=False)
    track_s = time.perf_counter() - start
    for i, frame in enumerate(frames):
        crop_face(frame, track.boxes[i], track.landmarks[i], args.size)
    pipeline_s = time.perf_counter() - start

    start = time.perf_counter()
    boxes, found = plain_boxes(frames, detector, config)
    for i, frame in enumerate(frames):
        crop_face(frame, boxes[i], np.zeros((5, 2)), args.size)
    plain_s = time.perf_counter() - start

    both = found & (track.found == 1)
    centre_diff = np.linalg.norm(
        (track.boxes[both, :2] + track.boxes[both, 2:]) / 2 - (boxes[both, :2] + boxes[both, 2:]) / 2,
        axis=1,
    )
    side_diff = np.abs((track.boxes[both, 2] - track.boxes[both, 0]) - (boxes[both, 2] - boxes[both, 0]))
    side = boxes[both, 2] - boxes[both, 0]

    print(f"pipeline: {n / pipeline_s:7.1f} frames/s  ({track_s:.2f} s tracking + "
          f"{pipeline_s - track_s:.2f} s cropping; face found in {int(track.found.sum())}/{n})")
    print(f"plain:    {n / plain_s:7.1f} frames/s  (face found in {int(found.sum())}/{n})")
    print(f"speed-up: {plain_s / pipeline_s:7.1f}x")
    print(f"crop agreement over {int(both.sum())} frames (crop box side {side.mean():.0f} px): "
          f"centre mean {centre_diff.mean():.2f} px, max {centre_diff.max():.2f} px; "
          f"side mean {side_diff.mean():.2f} px, max {side_diff.max():.2f} px")
    traced_s, eager_s, diff = traced_against_eager(frames, detector, config)
    keys = len(frames[::config.detect_every])
    print(f"keyframe detection ({keys} keyframes, batches of {config.detect_batch}): traced "
          f"{keys / traced_s:.1f} frames/s, mtcnn eager {keys / eager_s:.1f} frames/s, "
          f"eager / traced time {eager_s / traced_s:.2f}x, largest row difference {diff:g}")


if __name__ == "__main__":
    main()

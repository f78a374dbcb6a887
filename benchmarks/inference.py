"""Batch inference speed of the Tzirakis et al. networks against this machine's matmul speed.

    python benchmarks/inference.py [--quick] [--audio-batch 8] [--audio-frames 150]
                                   [--video-batch 2] [--video-frames 50] [--xla]

For ``e2e_audio`` (speech CNN + 2 × 256 peephole LSTM), its two parts on
their own, ResNet-50 on 96 × 96 faces (``e2e_video``'s ``visual_cnn``) and the
whole ``e2e_video``, it times a ``tf.function`` forward pass
(``training=False``) on random inputs and prints per row:

* GFLOP per batch, counted analytically (benchmarks/_common.py: 2 × MACs of
  every conv / dense / LSTM matmul);
* effective GFLOP/s and its ratio to the float32 matmul FLOP/s measured in
  the same run (target ≥ 0.5 for e2e_audio and ResNet-50);
* the same ratio against the better of the two matmul measurements taken
  just before and just after the row ("÷ adjacent": the machine's state at
  that moment, which matters when other jobs load it);
* the real-time factor: seconds of media processed per second.

Times are best-of-N (the ratio compares best with best, so other jobs on
the machine move both alike). ``--xla`` adds the same rows compiled with
``jit_compile=True``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from emorec.models import build_model  # noqa: E402
from emorec.schema import FRAME_PERIOD, FRAME_SAMPLES  # noqa: E402

TARGET_RATIO = 0.5
HEADERS = ["model", "input", "GFLOP/batch", "s/batch", "GFLOP/s", "÷ matmul", "÷ adjacent", "real-time x", "target"]


def _forward(fn, jit: bool):
    return tf.function(fn, jit_compile=jit)


def _row(name, shape_text, flops, seconds, frames, reference, target, jit):
    rate = flops / seconds
    # Against the best matmul of the whole run, so read when the table is printed.
    ratio = _common.BestRatio(rate, reference, TARGET_RATIO)
    label = f"{name}{' [xla]' if jit else ''}"
    status = ratio.verdict() if target else "-"
    return [label, shape_text, f"{flops / 1e9:.1f}", f"{seconds:.3f}", f"{rate / 1e9:.1f}",
            ratio, f"{rate / reference.adjacent():.2f}", f"{frames * FRAME_PERIOD / seconds:.1f}", status], ratio


def _time_cases(cases, batch, frames, repeats, reference, jit) -> list:
    """Time each ``(name, fn, MACs per frame, has target)`` case, a matmul measurement after each; its rows."""
    rows = []
    for name, fn, per_frame, target in cases:
        timing = _common.time_call(_forward(fn, jit), repeats=repeats)
        reference.measure()
        rows.append(_row(name, f"{batch}x{frames}", 2 * per_frame * batch * frames, timing["best"],
                         batch * frames, reference, target, jit))
    return rows


def audio_rows(batch, frames, repeats, reference, jit) -> list:
    """Rows for e2e_audio, its speech CNN alone and its LSTM head alone."""
    model = build_model("e2e_audio", {})
    macs = _common.sequence_model_macs(model)
    rng = np.random.default_rng(0)
    audio = tf.constant(rng.standard_normal((batch, frames, FRAME_SAMPLES), dtype=np.float32) * 0.1)
    cnn, head = model.get_layer("speech_cnn"), model.get_layer("recurrent")
    flat = tf.reshape(audio, (-1, FRAME_SAMPLES))
    features = tf.constant(rng.standard_normal((batch, frames, 1280), dtype=np.float32))
    cases = [
        ("e2e_audio", lambda: model({"audio": audio}, training=False)["emotion"], sum(macs.values()), True),
        ("  speech CNN only", lambda: cnn(flat, training=False), macs["speech_cnn"], False),
        ("  2x256 LSTM only", lambda: head(features, training=False)[0], macs["recurrent"], False),
    ]
    return _time_cases(cases, batch, frames, repeats, reference, jit)


def video_rows(batch, frames, repeats, reference, jit) -> list:
    """Rows for ResNet-50 on 96 x 96 faces (e2e_video's visual CNN) and the whole e2e_video."""
    model = build_model("e2e_video", {})
    macs = _common.sequence_model_macs(model)
    size = model.get_layer("visual_cnn").input.shape[1]
    rng = np.random.default_rng(0)
    video = tf.constant(rng.uniform(size=(batch, frames, size, size, 3)).astype(np.float32))
    faces = tf.reshape(video, (-1, size, size, 3))
    cnn = model.get_layer("visual_cnn")
    cases = [
        (f"ResNet-50 {size}x{size}", lambda: cnn(faces, training=False), macs["visual_cnn"], True),
        ("e2e_video", lambda: model({"video": video}, training=False)["emotion"], sum(macs.values()), False),
    ]
    return _time_cases(cases, batch, frames, repeats, reference, jit)


def main(argv=None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batches, one timed repeat")
    parser.add_argument("--audio-batch", type=int, default=8)
    parser.add_argument("--audio-frames", type=int, default=150)
    parser.add_argument("--video-batch", type=int, default=2)
    parser.add_argument("--video-frames", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--xla", action="store_true", help="also time every row with jit_compile=True")
    parser.add_argument("--skip-video", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.audio_batch, args.audio_frames = 2, 50
        args.video_batch, args.video_frames = 1, 16
        args.repeats = 1
    print(_common.machine_description())
    reference = _common.MatmulReference(args.matmul_size)
    reference.measure()
    rows = []
    for jit in (False, True) if args.xla else (False,):
        rows += audio_rows(args.audio_batch, args.audio_frames, args.repeats, reference, jit)
        if not args.skip_video:
            rows += video_rows(args.video_batch, args.video_frames, args.repeats, reference, jit)
    print(reference.describe())
    print("FLOPs: analytic, 2 x MACs of conv/dense/LSTM matmuls; times: best of "
          f"{args.repeats} after a warm-up call; input = batch x frames of {FRAME_PERIOD * 1000:.0f} ms")
    _common.print_table(HEADERS, [r for r, _ in rows])
    print(f"target: e2e_audio and ResNet-50 effective FLOP/s >= {TARGET_RATIO} x matmul FLOP/s")


if __name__ == "__main__":
    main()

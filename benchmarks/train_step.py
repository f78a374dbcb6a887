"""Time of one e2e_audio training step at the paper's shapes, and whether tf.data keeps up with it.

    python benchmarks/train_step.py [--quick] [--data DIR] [--batch-size 25] [--xla]

The step (forward, CCC objective + weight decay, gradient, Adam update; the
same computation as emorec.training.engine's step on one device) runs at
train/e2e_audio.yaml's shapes: batch 25 × 150 frames (6 s windows) of raw
audio. The input pipeline is ``emorec.data.make_dataset(..., training=True)``
at the same batch and window, on ``--data DIR`` or on a synthetic audio
dataset written with tests/dataset_factory.py to a temporary directory.

Printed: step time, windows/s the step consumes, windows/s the pipeline
delivers on its own, their ratio (target ≥ 5: the pipeline must be able to
keep well ahead of the step), and the step's effective FLOP/s (3 × the
analytic forward FLOPs) ÷ the matmul FLOP/s measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from emorec.data import ReadSpec, make_dataset  # noqa: E402
from emorec.models import build_model  # noqa: E402
from emorec.schema import FRAME_PERIOD  # noqa: E402

TARGET_RATIO = 5.0


def synthetic_audio_dataset(root: Path, recordings: int, frames: int, window: int) -> Path:
    """Write an audio-only synthetic dataset with ``window``-frame windows; return its directory."""
    _common.add_tests_to_path()
    from dataset_factory import make_dataset_dir

    data_dir, _ = make_dataset_dir(root, recordings={"train": recordings}, frames=frames,
                                   window_frames=window, modalities=("audio",))
    return data_dir


def pipeline_rate(data_dir: Path, batch: int, window: int, batches: int) -> float:
    """Windows/s of make_dataset in training mode (after one warm-up batch)."""
    ds = make_dataset(data_dir, "train", ReadSpec(batch_size=batch, modalities=("audio",), training=True,
                                                  window_frames=window, seed=0, steps=batches + 1))
    iterator = iter(ds)
    next(iterator)
    start = time.perf_counter()
    windows = 0
    for _ in range(batches):
        windows += int(next(iterator)["audio"].shape[0])
    return windows / (time.perf_counter() - start)


def main(argv=None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 5, one timed step, fewer pipeline batches")
    parser.add_argument("--data", help="built dataset with audio (default: synthetic, in a temp dir)")
    parser.add_argument("--batch-size", type=int, help="default: train/e2e_audio.yaml's (25)")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps")
    parser.add_argument("--pipeline-batches", type=int, default=20)
    parser.add_argument("--recordings", type=int, default=8, help="synthetic dataset only")
    parser.add_argument("--frames", type=int, default=1500, help="synthetic frames per recording")
    parser.add_argument("--xla", action="store_true", help="compile the step with jit_compile=True")
    args = parser.parse_args(argv)
    config = _common.load_train_config("e2e_audio")
    if args.quick:
        args.batch_size, args.repeats, args.pipeline_batches, args.recordings, args.frames = 5, 1, 5, 2, 600
    if args.batch_size:
        config = config.replace(data=config.data.replace(batch_size=args.batch_size))
    batch, window = config.data.batch_size, config.window_frames
    print(_common.machine_description())
    reference = _common.MatmulReference()
    reference.measure()

    model = build_model("e2e_audio", config.model)
    macs = sum(_common.sequence_model_macs(model).values())
    step = _common.make_train_step(model, config, jit=args.xla)
    data = _common.random_batch(batch, window, ("audio",), 0)
    timing = _common.time_call(lambda: step(data), repeats=args.repeats)
    step_s = timing["best"]
    reference.measure()

    consumed = batch / step_s
    flops = 3 * 2 * macs * batch * window
    print(f"step: e2e_audio, batch {batch} x {window} frames ({window * FRAME_PERIOD:.1f} s windows), "
          f"Adam, {'XLA' if args.xla else 'no XLA'}; best of {args.repeats} "
          f"(first call incl. tracing {timing['first']:.1f} s)")
    rows = [
        ["training step (s)", f"{step_s:.3f}"],
        ["windows/s consumed by the step", f"{consumed:.2f}"],
        ["audio seconds trained per second", f"{consumed * window * FRAME_PERIOD:.1f}"],
        ["step GFLOP (3 x forward, analytic)", f"{flops / 1e9:.0f}"],
        ["step GFLOP/s ÷ matmul GFLOP/s", f"{flops / step_s / reference.best:.2f}"],
    ]
    # Printed before the pipeline runs, so a pipeline failure keeps the step figures.
    _common.print_table(["figure", "value"], rows)

    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            data_dir, source = Path(args.data), args.data
        else:
            data_dir = synthetic_audio_dataset(Path(tmp), args.recordings, args.frames, window)
            source = f"synthetic ({args.recordings} recordings x {args.frames} frames, temp dir)"
        windows_per_s = pipeline_rate(data_dir, batch, window, args.pipeline_batches)
    reference.measure()
    ratio = windows_per_s / consumed
    print(f"pipeline data: {source}")
    print(reference.describe())
    _common.print_table(["figure", "value"], [
        ["tf.data windows/s (training mode)", f"{windows_per_s:.1f}"],
        ["tf.data ÷ step rate", f"{ratio:.1f}  (target >= {TARGET_RATIO:g}: "
                                f"{_common.verdict(ratio, TARGET_RATIO)})"],
    ])

if __name__ == "__main__":
    main()

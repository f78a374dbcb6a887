"""Training and streaming-inference speed of Nguyen et al.'s ae_lstm against this machine's matmul speed.

    python benchmarks/ae_lstm.py [--quick] [--batch-size 32] [--chunks 25,150] [--xla]

Training: the step (forward through both auto-encoders and the 2 × 512
LSTM, the joint loss α·L2D + β·L1D + γ·L_ccc + weight decay, gradient, Adam)
at train/ae_lstm.yaml's shapes, batch 32 × 5 frames (0.2 s windows) of
96 × 96 faces and raw audio; printed as windows/s and as effective FLOP/s
(3 × the analytic forward FLOPs, decoders included) ÷ matmul FLOP/s.

Streaming inference: the streaming twin (emorec.streaming.build_streaming, the
state twin without decoders: encoders + LSTM) on one recording, a
chunk of frames plus the packed LSTM state in, predictions plus the new state
out, the state fed back from call to call; printed as the real-time factor
(seconds of media per second) and FLOP/s ÷ matmul FLOP/s, per chunk length.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import tensorflow as tf  # noqa: E402

from emorec.models import build_model  # noqa: E402
from emorec.schema import FRAME_PERIOD  # noqa: E402
from emorec.streaming import build_streaming, zero_state  # noqa: E402

HEADERS = ["case", "input", "GFLOP/call", "s/call", "GFLOP/s", "÷ matmul", "÷ adjacent", "windows/s", "real-time x"]
STREAMING_PARTS = ("face_encoder", "audio_encoder", "recurrent")


def streaming_rows(model, chunks, repeats, reference, macs, jit) -> list:
    """One row per chunk length: the streaming model on batch 1, its state carried from call to call."""
    streaming = build_streaming(model)
    face_size = model.get_layer("face_encoder").input.shape[1]
    per_frame = sum(macs[k] for k in STREAMING_PARTS)
    call = tf.function(lambda inputs: streaming(inputs, training=False), jit_compile=jit)
    rows = []
    for frames in chunks:
        chunk = _common.random_batch(1, frames, ("audio", "video"), face_size, seed=frames)
        state = {"states": tf.constant(zero_state(streaming, 1))}

        def run(chunk=chunk, state=state):
            out = call({"audio": chunk["audio"], "video": chunk["video"], "states": state["states"]})
            state["states"] = out["states"]
            return out["emotion"]

        seconds = _common.time_call(run, repeats=repeats)["best"]
        reference.measure()
        flops = 2 * per_frame * frames
        rows.append([f"streaming{' [xla]' if jit else ''}", f"1x{frames} + state", f"{flops / 1e9:.2f}",
                     f"{seconds:.3f}", f"{flops / seconds / 1e9:.1f}",
                     _common.BestRatio(flops / seconds, reference),
                     f"{flops / seconds / reference.adjacent():.2f}", "-",
                     f"{frames * FRAME_PERIOD / seconds:.1f}"])
    return rows


def main(argv=None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 8, one timed repeat, one chunk length")
    parser.add_argument("--batch-size", type=int, help="default: train/ae_lstm.yaml's (32)")
    parser.add_argument("--chunks", default="25,150", help="streaming chunk lengths in frames")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xla", action="store_true", help="also time everything with jit_compile=True")
    args = parser.parse_args(argv)
    config = _common.load_train_config("ae_lstm")
    if args.batch_size:
        config = config.replace(data=config.data.replace(batch_size=args.batch_size))
    batch, window = config.data.batch_size, config.window_frames
    chunks = [int(c) for c in args.chunks.split(",")]
    if args.quick:
        batch, args.repeats, chunks = 8, 1, chunks[:1]
        config = config.replace(data=config.data.replace(batch_size=batch))
    print(_common.machine_description())
    reference = _common.MatmulReference()
    reference.measure()

    model = build_model("ae_lstm", config.model)
    macs = _common.sequence_model_macs(model)
    face_size = model.get_layer("face_encoder").input.shape[1]
    data = _common.random_batch(batch, window, ("audio", "video"), face_size)
    rows = []
    for jit in (False, True) if args.xla else (False,):
        step = _common.make_train_step(model, config, jit=jit)
        seconds = _common.time_call(functools.partial(step, data), repeats=args.repeats)["best"]
        reference.measure()
        flops = 3 * 2 * sum(macs.values()) * batch * window
        rows.append([f"training step{' [xla]' if jit else ''}", f"{batch}x{window}", f"{flops / 1e9:.1f}",
                     f"{seconds:.3f}", f"{flops / seconds / 1e9:.1f}",
                     _common.BestRatio(flops / seconds, reference),
                     f"{flops / seconds / reference.adjacent():.2f}", f"{batch / seconds:.1f}",
                     f"{batch * window * FRAME_PERIOD / seconds:.1f}"])
        rows += streaming_rows(model, chunks, args.repeats, reference, macs, jit)
    print(reference.describe())
    print("per-frame MACs (M): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in macs.items()))
    print("FLOPs: analytic, 2 x MACs of conv/deconv/dense/LSTM matmuls; training = 3 x forward "
          f"(decoders included); streaming = encoders + LSTM; times best of {args.repeats}")
    _common.print_table(HEADERS, rows)


if __name__ == "__main__":
    main()

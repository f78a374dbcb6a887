"""Pini et al.'s (EmotiW 2017) clip pipeline: clip records built per second, FaceNet faces/s, C3D slices/s.

    python benchmarks/emotiw.py [--quick] [--clips 14] [--face-batch 16] [--slice-batch 2] [--demo-sizes]

* **Clip build**: demo clips (``emorec.demo.clips``, 128 x 96 pixels, 1-2 s,
  25 fps, written first and not timed) built into a clip dataset with
  ``emorec.clips.build.build_clip_dataset`` (one process, real MTCNN tracker
  detecting every 5th frame, 160-pixel JPEG faces, 22,050 Hz sound): clip
  records per second and video frames per second.
* **Inference**: a ``tf.function`` forward pass (``training=False``) on random
  inputs of FaceNet's Inception-ResNet-v1 trunk at 160 x 160 (to its fifth
  Inception-ResNet-C block, the frame branch's input) and of the C3D trunk on
  16 x 112 x 112 slices (to pool5), each with its branch head. FLOPs are
  counted by ``emorec.models.flops`` (2 x multiply-adds of every conv, dense and
  LSTM matmul); the effective FLOP/s is divided by the best float32 matmul
  FLOP/s measured in the same run (``benchmarks/_common.py``) and by the better
  of the matmul measurements just before and after the row (``÷ adjacent``).
  ``--demo-sizes`` adds the demo's slim networks (``train/emotiw_*.yaml``
  ``demo:`` sections) and the audio branch and fusion at the paper's sizes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from emorec.config import config_path_for, resolve_config  # noqa: E402
from emorec.models import build_model  # noqa: E402
from emorec.models.flops import multiply_adds_per_example  # noqa: E402

HEADERS = ["network", "input", "GFLOP/batch", "s/batch", "GFLOP/s", "÷ matmul", "÷ adjacent", "items/s"]


def build_rows(clips: int) -> list[str]:
    """Write ``clips`` demo clips, build them into a clip dataset and return the lines to print."""
    from emorec.clips.build import build_clip_dataset
    from emorec.corpus.adapters.demo_clips import demo_clip_sources
    from emorec.demo.clips import EMOTIONS, ClipSpec

    per_class = max(1, -(-clips // len(EMOTIONS)))
    spec = ClipSpec(train_per_class=per_class, val_per_class=0, min_seconds=1.0, max_seconds=2.0,
                    width=128, height=96, train_subjects=2)
    with tempfile.TemporaryDirectory(prefix="emotiw-bench-") as tmp:
        sources = demo_clip_sources(Path(tmp) / "media", spec=spec, progress=False)
        start = time.perf_counter()
        manifest = build_clip_dataset(sources, Path(tmp) / "clips", progress=False)
        seconds = time.perf_counter() - start
    frames = sum(c.frames for c in manifest.clips.values())
    count = len(manifest.clips)
    return [f"clip build: {count} clips, {frames} frames of 128x96 in {seconds:.1f} s (1 process, MTCNN every "
            f"5th frame, 160-pixel faces): {count / seconds:.2f} clips/s, {frames / seconds:.1f} frames/s"]


def _model(name: str, demo: bool):
    config = resolve_config(config_path_for(name), demo=demo,
                            overrides=["model.num_classes=7"] + (["model.soundnet_weights=null"]
                                                                 if name == "emotiw_audio" else []))
    return build_model(name, config.model)


def inference_rows(cases, repeats: int, reference) -> list:
    """Time each ``(label, model, inputs, unit)`` case; a matmul measurement follows each."""
    rows = []
    for label, model, inputs, unit in cases:
        batch = int(next(iter(inputs.values())).shape[0])
        flops = 2 * multiply_adds_per_example(model) * batch
        forward = tf.function(lambda x, m=model: m(x, training=False)["emotion_class"])
        timing = _common.time_call(lambda f=forward, x=inputs: f(x), repeats=repeats)
        reference.measure()
        seconds = timing["best"]
        rate = flops / seconds
        shape = "x".join(str(d) for d in next(iter(inputs.values())).shape)
        rows.append([label, shape, f"{flops / 1e9:.2f}", f"{seconds:.3f}", f"{rate / 1e9:.1f}",
                     _common.BestRatio(rate, reference), f"{rate / reference.adjacent():.2f}",
                     f"{batch / seconds:.1f} {unit}"])
    return rows


def cases(face_batch: int, slice_batch: int, demo_sizes: bool) -> list:
    """The timed networks and their random inputs."""
    rng = np.random.default_rng(0)

    def uniform(*shape):
        return tf.constant(rng.uniform(size=shape).astype(np.float32))

    frame = _model("emotiw_frame", False)
    c3d = _model("emotiw_c3d", False)
    out = [
        ("Inception-ResNet-v1 + head (frame)", frame, {"face": uniform(face_batch, 160, 160, 3)}, "faces/s"),
        ("C3D + head (16-frame slice)", c3d, {"clip": uniform(slice_batch, 16, 112, 112, 3)}, "slices/s"),
    ]
    if demo_sizes:
        audio = _model("emotiw_audio", False)
        fusion = _model("emotiw", False)
        out.append(("SoundNet + LSTM head (1 s)", audio,
                    {"audio": tf.constant(rng.uniform(-1, 1, (8, 22050)).astype(np.float32))}, "seconds/s"))
        out.append(("fusion (NetVLAD x 2)", fusion,
                    {"frame_features": uniform(32, 48, 256), "slice_features": uniform(32, 32, 256),
                     "audio_features": uniform(32, 128)}, "clips/s"))
        small_frame, small_c3d = _model("emotiw_frame", True), _model("emotiw_c3d", True)
        size, slice_size = small_frame.input["face"].shape[1], small_c3d.input["clip"].shape[2]
        out.append(("demo frame branch (width 1/8)", small_frame, {"face": uniform(64, size, size, 3)}, "faces/s"))
        out.append(("demo C3D branch (width 1/8)", small_c3d,
                    {"clip": uniform(32, 16, slice_size, slice_size, 3)}, "slices/s"))
    return out


def main(argv=None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few clips, small batches, one timed repeat")
    parser.add_argument("--clips", type=int, default=14, help="demo clips built (default %(default)s)")
    parser.add_argument("--face-batch", type=int, default=16)
    parser.add_argument("--slice-batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--demo-sizes", action="store_true", help="also the audio branch, the fusion and the "
                                                                  "demo's slim frame and C3D branches")
    parser.add_argument("--skip-build", action="store_true", help="no clip build row")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.face_batch, args.slice_batch, args.repeats = 7, 4, 1, 1
    print(_common.machine_description())
    lines = [] if args.skip_build else build_rows(args.clips)
    reference = _common.MatmulReference(args.matmul_size)
    reference.measure()
    rows = inference_rows(cases(args.face_batch, args.slice_batch, args.demo_sizes), args.repeats, reference)
    for line in lines:
        print(line)
    print(reference.describe())
    print(f"FLOPs: emorec.models.flops (2 x multiply-adds); times: best of {args.repeats} after a warm-up call")
    _common.print_table(HEADERS, rows)


if __name__ == "__main__":
    main()

"""Throughput of emorec.data.make_dataset: windows/s and MB/s in training mode with augmentation.

    python benchmarks/data_pipeline.py [--data data/demo] [--partition train] [--batch-size 8]

Uses the built dataset at ``--data`` if it has a manifest, else writes a
synthetic one (tests/dataset_factory.py) to a temporary directory; the output
says which. "read MB/s" counts TFRecord bytes consumed, "out MB/s" the bytes
of the float tensors handed to the model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from emorec.data import ReadSpec, make_dataset  # noqa: E402
from emorec.manifest import read_manifest  # noqa: E402
from emorec.schema import DEFAULT_FACE_SIZE  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synthetic_dataset(root: Path, recordings: int, frames: int, window_frames: int) -> Path:
    """Write a synthetic audio+video dataset with default-size faces and return its directory."""
    sys.path.insert(0, str(REPO / "tests"))
    from dataset_factory import make_dataset_dir

    data_dir, _ = make_dataset_dir(
        root, recordings={"train": recordings}, frames=frames, window_frames=window_frames,
        face_size=DEFAULT_FACE_SIZE,
    )
    return data_dir


def measure(data_dir: Path, partition: str, batch_size: int, training: bool, max_batches: int,
            **kwargs) -> dict:
    """Iterate the pipeline once (after one warm-up batch) and return throughput figures."""
    manifest = read_manifest(data_dir)
    shards = manifest.shards_for(partition)
    bytes_per_window = sum(s.bytes for s in shards) / max(1, sum(s.windows for s in shards))
    spec = ReadSpec(batch_size=batch_size, training=training, seed=0, steps=max_batches + 1 if training else None,
                    repeat=not training, **kwargs)
    ds = make_dataset(data_dir, partition, spec)
    iterator = iter(ds)
    next(iterator)  # graph building and the first fill of the buffers are not throughput
    windows = out_bytes = 0
    start = time.perf_counter()
    for _ in range(max_batches):
        batch = next(iterator)
        windows += int(batch["mask"].shape[0])
        out_bytes += sum(v.numpy().nbytes for k, v in batch.items() if v.dtype != tf.string)
    seconds = time.perf_counter() - start
    return {
        "windows_per_s": windows / seconds,
        "frames_per_s": windows * int(batch["mask"].shape[1]) / seconds,
        "read_mb_per_s": windows * bytes_per_window / seconds / 1e6,
        "out_mb_per_s": out_bytes / seconds / 1e6,
        "batches": max_batches,
        "seconds": seconds,
    }


def main(argv=None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO / "data" / "demo"))
    parser.add_argument("--partition", default="train")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per run")
    parser.add_argument("--recordings", type=int, default=4, help="synthetic dataset only")
    parser.add_argument("--frames", type=int, default=600, help="synthetic frames per recording")
    parser.add_argument("--window-frames", type=int, default=150, help="synthetic stored window")
    args = parser.parse_args(argv)

    data_dir = Path(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        if (data_dir / "manifest.json").is_file():
            source = f"built dataset {data_dir}"
        else:
            data_dir = synthetic_dataset(Path(tmp), args.recordings, args.frames, args.window_frames)
            source = (f"synthetic dataset ({args.data} has no manifest): {args.recordings} recordings "
                      f"x {args.frames} frames, {DEFAULT_FACE_SIZE} px faces")
        options = read_manifest(data_dir).options
        print(f"data: {source}")
        print(f"window {options['window_frames']} frames, modalities {options['modalities']}, "
              f"batch {args.batch_size}, {os.cpu_count()} CPUs, TF {tf.__version__}")
        runs = [
            ("training, augmentation on", True, {}),
            ("evaluation (no augmentation)", False, {}),
            ("training, audio only", True, {"modalities": ("audio",)}),
        ]
        for name, training, kwargs in runs:
            if "modalities" in kwargs and "audio" not in options["modalities"]:
                continue
            r = measure(data_dir, args.partition, args.batch_size, training, args.batches, **kwargs)
            print(f"{name:30s} {r['windows_per_s']:8.1f} windows/s {r['frames_per_s']:9.0f} frames/s "
                  f"{r['read_mb_per_s']:8.1f} read MB/s {r['out_mb_per_s']:8.1f} out MB/s "
                  f"({r['batches']} batches in {r['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write small synthetic dataset directories (shards + manifest.json) with known contents.

Used by tests of everything that reads datasets::

    from dataset_factory import make_dataset_dir
    data_dir, truth = make_dataset_dir(tmp_path, recordings={"train": 2, "dev": 1},
                                       frames=23, window_frames=10)

Recording ids are ``"{partition}_{k}"`` (k from 1). ``truth[recording_id]``
holds the recording's valid frames as NumPy arrays: ``audio (N, 640)`` float32,
``video (N, S, S, 3)`` uint8 (the image before JPEG encoding),
``video_jpeg (N, S, S, 3)`` uint8 (the JPEG decoded again by
``tf.io.decode_jpeg``, i.e. what a reader must return exactly),
``landmarks (N, 5, 2)`` float32, ``face_found (N,)`` int64, ``labels (N, 2)``
float32 (only for labelled partitions). Windows start at ``k * hop_frames``;
the last window is zero-padded with ``valid = 0`` frames, and there are just
enough windows for the last one to reach frame ``N - 1``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from emorec.manifest import DatasetManifest, ShardInfo, file_sha256, write_manifest
from emorec.schema import (
    FRAME_PERIOD,
    FRAME_SAMPLES,
    NUM_LANDMARKS,
    WindowRecord,
    encode_window,
)


def _faces(rng: np.random.Generator, num_frames: int, size: int) -> np.ndarray:
    """Smooth coloured faces (gradients + a moving blob) that survive JPEG well."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    base = rng.uniform(40, 200, size=3).astype(np.float32)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        cy, cx = 0.5 + 0.3 * np.sin(0.3 * i), 0.5 + 0.3 * np.cos(0.2 * i)
        blob = 60.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05)
        img = np.stack(
            [base[0] + 50 * xx + blob, base[1] + 50 * yy - blob / 2, base[2] - 40 * xx * yy + blob / 3],
            axis=-1,
        )
        frames[i] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return frames


def _recording(rng: np.random.Generator, num_frames: int, size: int, labelled: bool,
               modalities: Sequence[str]) -> dict:
    truth: dict[str, np.ndarray] = {}
    if "audio" in modalities:
        truth["audio"] = rng.standard_normal((num_frames, FRAME_SAMPLES)).astype(np.float32) * 0.1
    if "video" in modalities:
        truth["video"] = _faces(rng, num_frames, size)
        truth["landmarks"] = rng.uniform(0, size, (num_frames, NUM_LANDMARKS, 2)).astype(np.float32)
        found = (rng.uniform(size=num_frames) > 0.2).astype(np.int64)
        truth["face_found"] = found
    if labelled:
        t = np.arange(num_frames, dtype=np.float32)
        phase = rng.uniform(0, 2 * np.pi)
        truth["labels"] = np.stack(
            [0.5 * np.sin(0.1 * t + phase), 0.4 * np.cos(0.07 * t + phase)], axis=1
        ).astype(np.float32)
    return truth


def _window_starts(num_frames: int, window: int, hop: int) -> list[int]:
    count = 1 + max(0, math.ceil((num_frames - window) / hop))
    return [k * hop for k in range(count)]


def _padded(array: np.ndarray, start: int, window: int) -> np.ndarray:
    part = array[start:start + window]
    pad = [(0, window - len(part))] + [(0, 0)] * (array.ndim - 1)
    return np.pad(part, pad)


def make_dataset_dir(
    root: str | os.PathLike,
    recordings: dict[str, int] | None = None,
    frames: int | Sequence[int] = 23,
    window_frames: int = 10,
    hop_frames: int | None = None,
    modalities: Sequence[str] = ("audio", "video"),
    face_size: int = 16,
    labelled: bool | Iterable[str] = True,
    seed: int = 0,
    jpeg_quality: int = 95,
) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """Write a dataset under ``root/dataset`` and return ``(data_dir, truth)``.

    ``recordings`` maps partition -> number of recordings (default
    ``{"train": 2, "dev": 1}``); ``frames`` is the valid length of every
    recording, or a list cycled over the recordings of each partition;
    ``hop_frames`` defaults to ``window_frames``; ``labelled`` is a bool or
    the partitions that carry labels.
    """
    recordings = {"train": 2, "dev": 1} if recordings is None else recordings
    hop_frames = window_frames if hop_frames is None else hop_frames
    lengths = [frames] if isinstance(frames, int) else list(frames)
    if isinstance(labelled, bool):
        labelled_parts = set(recordings) if labelled else set()
    else:
        labelled_parts = set(labelled)
    modalities = tuple(modalities)
    data_dir = Path(root) / "dataset"
    rng = np.random.default_rng(seed)
    truth: dict[str, dict[str, np.ndarray]] = {}
    shards: dict[str, ShardInfo] = {}
    for partition, count in recordings.items():
        (data_dir / partition).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            rid = f"{partition}_{k + 1}"
            num_frames = lengths[k % len(lengths)]
            has_labels = partition in labelled_parts
            rec = _recording(rng, num_frames, face_size, has_labels, modalities)
            if "video" in rec:
                jpegs = [tf.io.encode_jpeg(img, quality=jpeg_quality).numpy() for img in rec["video"]]
                rec["video_jpeg"] = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs])
                # Padding frames carry a black face, as the schema says.
                black = tf.io.encode_jpeg(np.zeros((face_size, face_size, 3), np.uint8)).numpy()
            truth[rid] = rec
            starts = _window_starts(num_frames, window_frames, hop_frames)
            rel = f"{partition}/{rid}.tfrecord"
            tmp = data_dir / f"{rel}.tmp"
            with tf.io.TFRecordWriter(str(tmp)) as writer:
                for start in starts:
                    valid = _padded(np.ones(num_frames, np.int64), start, window_frames)
                    window = WindowRecord(
                        recording_id=rid, subject_id=f"subject_{rid}", partition=partition,
                        start_frame=start, valid=valid, face_size=face_size,
                    )
                    if "audio" in rec:
                        window.audio = _padded(rec["audio"], start, window_frames)
                    if "video" in rec:
                        part = jpegs[start:start + window_frames]
                        window.faces = part + [black] * (window_frames - len(part))
                        window.face_found = _padded(rec["face_found"], start, window_frames)
                        window.landmarks = _padded(rec["landmarks"], start, window_frames)
                    if has_labels:
                        window.labels = _padded(rec["labels"], start, window_frames)
                    writer.write(encode_window(window))
            os.replace(tmp, data_dir / rel)
            shards[rid] = ShardInfo(
                recording_id=rid, partition=partition, subject_id=f"subject_{rid}", path=rel,
                windows=len(starts), frames=num_frames, has_labels=has_labels,
                bytes=(data_dir / rel).stat().st_size, sha256=file_sha256(data_dir / rel),
            )
    options = {
        "window": window_frames * FRAME_PERIOD,
        "hop": hop_frames * FRAME_PERIOD,
        "window_frames": window_frames,
        "hop_frames": hop_frames,
        "face_size": face_size,
        "audio_norm": "none",
        "label_alignment": "end",
        "modalities": list(modalities),
        "source": "dataset_factory",
        "tolerance_s": 0.0,
    }
    write_manifest(data_dir, DatasetManifest(options=options, shards=shards))
    return data_dir, truth

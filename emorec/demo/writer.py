"""Write the demo corpus to disk as real media files plus a ``recordings.csv`` manifest."""

from __future__ import annotations

import concurrent.futures
import csv
import io
import multiprocessing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emorec.demo.curves import random_curve
from emorec.demo.face import iter_face_frames, random_motion
from emorec.demo.spec import DemoSpec, Subject, make_subjects
from emorec.demo.speech import synthesize_speech
from emorec.errors import ConfigError
from emorec.manifest import atomic_write_bytes
from emorec.media.write import write_mp4, write_wav
from emorec.schema import FRAME_PERIOD

RECORDINGS_CSV = "recordings.csv"
CSV_COLUMNS = ("recording", "partition", "subject", "audio", "video", "labels")
LABEL_COLUMNS = ("time", "arousal", "valence")
MEDIA_DIR = "media"
LABELS_DIR = "labels"

# Independent random streams per subject, so that e.g. a change to the speech
# synthesis does not change the subject's curves or head motion.
_STREAM_CURVE, _STREAM_SPEECH, _STREAM_MOTION = 2, 3, 4


def label_csv_bytes(times: np.ndarray, values: np.ndarray) -> bytes:
    r"""Format a ``time,arousal,valence`` label track with fixed precision (byte-stable).

    Args:
        times: ``(N,)`` label times in seconds (written with 2 decimals).
        values: ``(N, 2)`` arousal and valence (written with 6 decimals).

    Returns:
        The UTF-8 CSV text with a header line and a final newline.

    >>> label_csv_bytes(np.array([0.0, 0.04]), np.array([[0.5, -0.25], [0.1, 0.0]])).decode()
    'time,arousal,valence\n0.00,0.500000,-0.250000\n0.04,0.100000,0.000000\n'
    """
    lines = [",".join(LABEL_COLUMNS)]
    lines += [f"{t:.2f},{a:.6f},{v:.6f}" for t, (a, v) in zip(times, values)]
    return ("\n".join(lines) + "\n").encode()


def _write_recording(root: Path, subject: Subject, spec: DemoSpec, seed: int) -> dict:
    """Write one subject's wav, mp4 and label csv; return its ``recordings.csv`` row."""
    def stream(kind):
        return np.random.default_rng([seed, subject.index, kind])

    curve = random_curve(stream(_STREAM_CURVE))
    audio, mouth_open = synthesize_speech(
        curve, subject.voice, spec.num_samples, spec.sample_rate, stream(_STREAM_SPEECH)
    )
    rec = subject.recording_id
    row = {
        "recording": rec,
        "partition": subject.partition,
        "subject": subject.subject_id,
        "audio": f"{MEDIA_DIR}/{rec}.wav",
        "video": f"{MEDIA_DIR}/{rec}.mp4",
        "labels": f"{LABELS_DIR}/{rec}.csv",
    }
    write_wav(root / row["audio"], audio, spec.sample_rate)
    frames = iter_face_frames(curve, subject.look, random_motion(stream(_STREAM_MOTION)), mouth_open, spec)
    write_mp4(root / row["video"], frames, fps=spec.fps)
    # One label per 40 ms from 0 to the duration inclusive, like RECOLA's 7501 rows for 300 s.
    times = np.arange(spec.num_frames + 1) * FRAME_PERIOD
    atomic_write_bytes(root / row["labels"], label_csv_bytes(times, curve(times)))
    return row


def write_demo_media(out_dir, *, seed: int = 0, progress: bool = True, spec: DemoSpec | None = None,
                     jobs: int = 1) -> Path:
    """Write the synthetic demo corpus: a wav, an mp4 and a label CSV per recording.

    ``jobs`` > 1 writes recordings in that many processes; every recording
    comes from its own random streams, so the files are the same either way.
    ``recordings.csv`` is written last and atomically, so its presence means the media are
    complete.

    Args:
        out_dir: the folder to write ``recordings.csv``, ``media/`` and ``labels/`` into
            (created if missing).
        seed: the corpus seed (same seed, same files).
        progress: show a progress bar over the recordings.
        spec: the corpus size and video format; None means :class:`DemoSpec` defaults.
        jobs: number of processes writing recordings (``spawn`` start method).

    Returns:
        The path of the written ``recordings.csv``.

    Raises:
        ConfigError: ``out_dir`` is an existing file, or ``jobs`` is below 1.
        MediaError: PyAV's ffmpeg has no usable video encoder (from :mod:`emorec.media.write`).
    """
    spec = spec or DemoSpec()
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: the demo corpus needs a directory, this is a file")
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    for sub in (MEDIA_DIR, LABELS_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    subjects = make_subjects(spec, seed)
    bar = tqdm(total=len(subjects), desc="demo corpus", unit="rec", disable=not progress)
    with bar:
        if jobs == 1 or len(subjects) <= 1:
            rows = []
            for subject in subjects:
                rows.append(_write_recording(root, subject, spec, seed))
                bar.update(1)
        else:
            # spawn, not fork: the caller may already run TensorFlow's thread pools.
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(min(jobs, len(subjects)), mp_context=context) as pool:
                futures = [pool.submit(_write_recording, root, s, spec, seed) for s in subjects]
                try:
                    for future in concurrent.futures.as_completed(futures):
                        future.result()
                        bar.update(1)
                except BaseException:
                    pool.shutdown(cancel_futures=True)
                    raise
                rows = [future.result() for future in futures]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    # Written last and atomically: its presence means every media file above is complete.
    path = root / RECORDINGS_CSV
    atomic_write_bytes(path, text.getvalue().encode())
    return path

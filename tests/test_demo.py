"""The demo corpus: files, determinism, and that its media really follow the labels.

Every cue is measured from the written files (wav samples, decoded mp4
frames), never from the generator's internal arrays.
"""

from __future__ import annotations

import csv
import os
import wave
from pathlib import Path

import numpy as np
import pytest

from emorec.demo import CSV_COLUMNS, LABEL_COLUMNS, RECORDINGS_CSV, DemoSpec, write_demo_media
from emorec.errors import ConfigError
from emorec.schema import FRAME_PERIOD, FRAME_SAMPLES, SAMPLE_RATE

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before mtcnn imports TensorFlow

# Two subjects of 12 s: long enough for the slow curves to sweep a good part
# of their range (checked below), short enough to generate in about a second.
SMALL = DemoSpec(subjects=(("train", 1), ("dev", 1)), seconds=12.0)
TINY = DemoSpec(subjects=(("train", 1), ("test", 1)), seconds=2.0)


def read_rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as handle:
        assert handle.getnchannels() == 1 and handle.getsampwidth() == 2
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
        return data.astype(np.float64) / 32768.0, handle.getframerate()


def read_labels(path: Path) -> np.ndarray:
    with open(path) as handle:
        assert handle.readline().strip() == ",".join(LABEL_COLUMNS)
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def decode_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    return write_demo_media(root, seed=0, progress=False, spec=SMALL)


@pytest.fixture(scope="module")
def recordings(corpus) -> list[dict]:
    """Per recording: its row plus the wav, labels and decoded frames."""
    out = []
    for row in read_rows(corpus):
        audio, rate = read_wav(corpus.parent / row["audio"])
        out.append(
            dict(
                row=row,
                audio=audio,
                rate=rate,
                labels=read_labels(corpus.parent / row["labels"]),
                frames=decode_frames(corpus.parent / row["video"]),
            )
        )
    return out


@pytest.fixture(scope="module")
def faces(recordings) -> list[tuple[np.ndarray, list]]:
    """MTCNN on every 5th decoded frame (one batched call per recording): (indices, results)."""
    from mtcnn import MTCNN

    detector = MTCNN()
    out = []
    for rec in recordings:
        index = np.arange(0, len(rec["frames"]), 5)
        out.append((index, detector.detect_faces([rec["frames"][i] for i in index])))
    return out


def test_spec_defaults_fit_the_budget():
    spec = DemoSpec()
    recordings = sum(count for _, count in spec.subjects)
    assert dict(spec.subjects) == {"train": 4, "dev": 2, "test": 2}
    assert recordings * spec.seconds == 240.0  # 4 minutes of media in all
    assert spec.num_frames == 750 and spec.num_samples == 480_000
    assert spec.width % 2 == 0 and spec.height % 2 == 0 and spec.fps * FRAME_PERIOD == 1


@pytest.mark.parametrize(
    "kwargs", [dict(width=191), dict(seconds=1.01), dict(fps=30), dict(subjects=(("val", 1),))]
)
def test_spec_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        DemoSpec(**kwargs)


def test_out_dir_that_is_a_file_is_an_error(tmp_path):
    target = tmp_path / "corpus"
    target.write_text("not a directory")
    with pytest.raises(ConfigError, match="corpus"):
        write_demo_media(target, progress=False, spec=TINY)


def test_zero_jobs_is_an_error_and_writes_nothing(tmp_path):
    with pytest.raises(ConfigError, match="jobs must be at least 1, got 0"):
        write_demo_media(tmp_path / "corpus", progress=False, spec=TINY, jobs=0)
    assert not (tmp_path / "corpus").exists()


def test_csv_columns_and_files(corpus):
    root = corpus.parent
    assert corpus.name == RECORDINGS_CSV
    with open(corpus) as handle:
        assert handle.readline().strip().split(",") == list(CSV_COLUMNS)
    rows = read_rows(corpus)
    assert [(r["recording"], r["partition"]) for r in rows] == [("train_1", "train"), ("dev_1", "dev")]
    assert len({r["subject"] for r in rows}) == 2
    for row in rows:
        for column in ("audio", "video", "labels"):
            path = Path(row[column])
            assert not path.is_absolute()
            assert (root / path).is_file() and (root / path).stat().st_size > 0
        assert row["audio"] == f"media/{row['recording']}.wav"
        assert row["video"] == f"media/{row['recording']}.mp4"
        assert row["labels"] == f"labels/{row['recording']}.csv"
    # Written atomically: no temporary files left behind.
    assert not [p for p in root.rglob(".*") if p.is_file()]


def test_durations_match_labels(recordings):
    frames = SMALL.num_frames
    for rec in recordings:
        labels = rec["labels"]
        # One row per 40 ms, 0 to the duration inclusive (RECOLA: 7501 rows for 300 s).
        assert labels.shape == (frames + 1, 3)
        np.testing.assert_allclose(labels[:, 0], np.arange(frames + 1) * FRAME_PERIOD, atol=1e-9)
        duration = labels[-1, 0]
        assert rec["rate"] == SAMPLE_RATE
        assert len(rec["audio"]) == frames * FRAME_SAMPLES
        assert abs(len(rec["audio"]) / rec["rate"] - duration) < FRAME_PERIOD
        assert len(rec["frames"]) == frames
        assert rec["frames"][0].shape == (SMALL.height, SMALL.width, 3)
        assert abs(len(rec["frames"]) * FRAME_PERIOD - duration) < FRAME_PERIOD


def test_labels_are_smooth_varied_and_distinct(recordings):
    curves = [rec["labels"][:, 1:] for rec in recordings]
    for values in curves:
        assert np.all(np.abs(values) < 1)
        assert np.all(values.std(axis=0) > 0.2)  # the curves sweep a real range
        # Smooth: no jump over 0.05 between consecutive 40 ms labels.
        assert np.abs(np.diff(values, axis=0)).max() < 0.05
        assert abs(np.corrcoef(values[:, 0], values[:, 1])[0, 1]) < 0.9
    assert not np.allclose(curves[0], curves[1], atol=0.1)


def _frame_labels(labels: np.ndarray, count: int) -> np.ndarray:
    """Arousal/valence at the end of each 40 ms frame (the default 'end' alignment)."""
    return labels[1 : count + 1, 1:]


def _autocorrelation_pitch(frames: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame F0 (Hz) from the autocorrelation peak in 60..400 Hz, and a voiced flag."""
    low, high = rate // 400, rate // 60
    centred = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=2 * frames.shape[1], axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : frames.shape[1]]
    lag = low + np.argmax(acf[:, low:high], axis=1)
    strength = acf[np.arange(len(acf)), lag] / (acf[:, 0] + 1e-12)
    return rate / lag, strength > 0.5


def test_audio_loudness_and_pitch_follow_arousal(recordings):
    from scipy.ndimage import maximum_filter1d

    for rec in recordings:
        frames = rec["audio"].reshape(-1, FRAME_SAMPLES)
        arousal = _frame_labels(rec["labels"], len(frames))[:, 0]
        log_rms = np.log(np.sqrt(np.mean(frames**2, axis=1)) + 1e-5)
        # Within syllables the level tracks arousal closely; the 200 ms maximum
        # bridges the short pauses between them.
        assert np.corrcoef(maximum_filter1d(log_rms, 5), arousal)[0, 1] > 0.85
        f0, voiced = _autocorrelation_pitch(frames, rec["rate"])
        assert voiced.mean() > 0.5
        assert np.corrcoef(np.log(f0[voiced]), arousal[voiced])[0, 1] > 0.7
        # Louder = more arousal on an absolute scale shared by all subjects:
        # speaking frames at arousal > 0.3 are at least 6 dB above those below -0.3.
        speaking = log_rms > np.percentile(log_rms, 30)
        high = np.median(log_rms[speaking & (arousal > 0.3)])
        low = np.median(log_rms[speaking & (arousal < -0.3)])
        assert 20 * (high - low) / np.log(10) > 6


def test_mtcnn_finds_the_face(faces):
    found, confidence = [], []
    for _, results in faces:
        for result in results:
            found.append(bool(result))
            if result:
                best = max(result, key=lambda r: r["confidence"])
                confidence.append(best["confidence"])
                x, y, w, h = best["box"]
                # The face sways around the frame centre and is a sizeable part of it.
                assert abs(x + w / 2 - SMALL.width / 2) < 0.2 * SMALL.width
                assert 0.3 * SMALL.height < h < 0.9 * SMALL.height
    assert np.mean(found) >= 0.95
    assert np.median(confidence) > 0.95


def _mouth_patches(rec, index, results) -> tuple[np.ndarray, np.ndarray]:
    """Normalised grey 16x8 patches of the lower face (from the MTCNN box) and their valence."""
    patches, valence = [], []
    labels = _frame_labels(rec["labels"], len(rec["frames"]))
    for i, result in zip(index, results):
        if not result:
            continue
        x, y, w, h = max(result, key=lambda r: r["confidence"])["box"]
        grey = cv2.cvtColor(rec["frames"][i], cv2.COLOR_RGB2GRAY).astype(np.float64)
        crop = grey[max(0, int(y + 0.55 * h)) : int(y + 1.05 * h), max(0, int(x)) : int(x + w)]
        patch = cv2.resize(crop, (16, 8), interpolation=cv2.INTER_AREA).ravel()
        patches.append((patch - patch.mean()) / (patch.std() + 1e-6))
        valence.append(labels[i, 1])
    return np.array(patches), np.array(valence)


def test_mouth_region_follows_valence(recordings, faces):
    (train_x, train_v), (dev_x, dev_v) = [
        _mouth_patches(rec, *face) for rec, face in zip(recordings, faces)
    ]
    # A ridge regression on one subject's mouth pixels predicts another subject's valence.
    design = np.c_[train_x, np.ones(len(train_x))]
    weights = np.linalg.solve(design.T @ design + 10 * np.eye(design.shape[1]), design.T @ train_v)
    predicted = np.c_[dev_x, np.ones(len(dev_x))] @ weights
    assert np.corrcoef(predicted, dev_v)[0, 1] > 0.8
    # MTCNN's mouth-corner landmarks rise (relative to the nose) as valence rises.
    for (index, results), rec in zip(faces, recordings):
        labels = _frame_labels(rec["labels"], len(rec["frames"]))
        lift, valence = [], []
        for i, result in zip(index, results):
            if result:
                points, box = result[0]["keypoints"], result[0]["box"]
                corners = (points["mouth_left"][1] + points["mouth_right"][1]) / 2
                lift.append((points["nose"][1] - corners) / box[3])
                valence.append(labels[i, 1])
        assert np.corrcoef(lift, valence)[0, 1] > 0.6


def test_eyes_and_brows_follow_arousal(recordings, faces):
    # The upper face (eyes and brows) is brighter when the eyes open wide and the
    # brows rise: a ridge regression across subjects recovers arousal.
    data = []
    for rec, (index, results) in zip(recordings, faces):
        labels = _frame_labels(rec["labels"], len(rec["frames"]))
        patches, arousal = [], []
        for i, result in zip(index, results):
            if not result:
                continue
            x, y, w, h = max(result, key=lambda r: r["confidence"])["box"]
            grey = cv2.cvtColor(rec["frames"][i], cv2.COLOR_RGB2GRAY).astype(np.float64)
            crop = grey[max(0, int(y - 0.1 * h)) : int(y + 0.5 * h), max(0, int(x)) : int(x + w)]
            patch = cv2.resize(crop, (16, 8), interpolation=cv2.INTER_AREA).ravel()
            patches.append((patch - patch.mean()) / (patch.std() + 1e-6))
            arousal.append(labels[i, 0])
        data.append((np.array(patches), np.array(arousal)))
    (train_x, train_a), (dev_x, dev_a) = data
    design = np.c_[train_x, np.ones(len(train_x))]
    weights = np.linalg.solve(design.T @ design + 10 * np.eye(design.shape[1]), design.T @ train_a)
    predicted = np.c_[dev_x, np.ones(len(dev_x))] @ weights
    assert np.corrcoef(predicted, dev_a)[0, 1] > 0.7


def _snapshot(csv_path: Path) -> dict[str, bytes]:
    """Bytes of the CSV, labels and wav files; decoded frames for the mp4s."""
    root = csv_path.parent
    out = {RECORDINGS_CSV: csv_path.read_bytes()}
    for row in read_rows(csv_path):
        out[row["labels"]] = (root / row["labels"]).read_bytes()
        out[row["audio"]] = (root / row["audio"]).read_bytes()
        out[row["video"]] = np.stack(decode_frames(root / row["video"])).tobytes()
    return out


def test_same_seed_same_corpus_other_seed_differs(tmp_path):
    first = _snapshot(write_demo_media(tmp_path / "a", seed=3, progress=False, spec=TINY))
    # Written by two processes: the same bytes as one.
    again = _snapshot(write_demo_media(tmp_path / "b", seed=3, progress=False, spec=TINY, jobs=2))
    other = _snapshot(write_demo_media(tmp_path / "c", seed=4, progress=False, spec=TINY))
    assert first.keys() == again.keys() == other.keys()
    for name in first:
        assert first[name] == again[name], name
    # The table of recordings is the same; every media and label file differs.
    assert other[RECORDINGS_CSV] == first[RECORDINGS_CSV]
    for name in first:
        if name != RECORDINGS_CSV:
            assert other[name] != first[name], name

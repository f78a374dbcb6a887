"""Nothing lost, nothing silently wrong: bad values refused at the source, one build per directory,
a full disk or a killed build never mistaken for a finished dataset, messages that say what is wrong."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml
from media_samples import speech_samples
from scipy.io import wavfile

from emorec.cli import main as cli_main
from emorec.corpus import build
from emorec.corpus.adapters.manifest_csv import read_recordings_csv
from emorec.corpus.lock import LOCK_NAME, BuildLockedError
from emorec.corpus.validate import validate_dataset
from emorec.dataset import DatasetHandle
from emorec.errors import DatasetError, LabelError, MediaError
from emorec.manifest import read_manifest
from emorec.media.audio import iter_audio_blocks, read_audio
from emorec.media.faces import (
    FaceConfig,
    FaceDetections,
    build_track,
    cache_path,
    load_or_track_faces,
)
from emorec.media.files import file_problem
from emorec.recording import BuildOptions, RecordingSource, prepare_recording
from emorec.schema import FRAME_PERIOD, SAMPLE_RATE, SchemaError

REPO = Path(__file__).resolve().parents[1]
HEADER = "recording,partition,subject,audio,video,labels"
AUDIO_ONLY = ("--modalities", "audio", "--no-progress")


def write_labels(path, seconds=1.0, scale=1.0):
    times = np.arange(int(round(seconds / FRAME_PERIOD)) + 1) * FRAME_PERIOD
    arousal, valence = 0.5 * np.sin(3 * times) * scale, (0.4 * times - 0.3) * scale
    rows = "".join(f"{t:.2f},{a:.6f},{v:.6f}\n" for t, a, v in zip(times, arousal, valence))
    Path(path).write_text("time,arousal,valence\n" + rows)
    return path


def float_wav(path, samples):
    """A 32-bit float wav at 16 kHz holding ``samples`` exactly (NaN and values beyond 1 included)."""
    wavfile.write(path, SAMPLE_RATE, np.asarray(samples, np.float32))
    return path


def rows_csv(path, *rows):
    Path(path).write_text(HEADER + "\n" + "".join(row + "\n" for row in rows))
    return path


def leftovers(out: Path) -> list[str]:
    """Temporary files and locks anywhere under ``out``: none may survive a build."""
    return [str(p) for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_NAME]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """1 s of speech (float wav, peak 0.5) with labels; a second recording; their CSV."""
    root = tmp_path_factory.mktemp("faults")
    speech = speech_samples(1.0)
    float_wav(root / "good.wav", speech)
    float_wav(root / "other.wav", speech[::-1])
    write_labels(root / "good.csv")
    rows_csv(root / "two.csv", "a,train,s1,good.wav,,good.csv", "b,train,s2,other.wav,,good.csv")
    return root


def build_cli(csv, out, *extra):
    return cli_main(["build", "manifest", str(csv), str(out), *AUDIO_ONLY, *map(str, extra)])


def refused(media, tmp_path, capsys, row, *extra) -> str:
    """Build ``row`` alone: exit status 2, nothing written; returns stderr."""
    csv = rows_csv(media / f"{tmp_path.name}.csv", row)
    out = tmp_path / "out"
    capsys.readouterr()
    assert build_cli(csv, out, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (out / "manifest.json").exists() and not list(out.rglob("*.tfrecord"))
    assert leftovers(out) == []
    return err


# --- 2. NaN and inf refused at the source ---------------------------------------------------------


def test_nan_audio_is_refused_naming_the_file_and_the_first_sample(media, tmp_path, capsys):
    samples = speech_samples(1.0)
    samples[8000:12000] = np.nan  # 4,000 NaN samples from 0.5 s
    float_wav(media / "nan.wav", samples)
    err = refused(media, tmp_path, capsys, "bad,train,s1,nan.wav,,good.csv")
    assert f"error: {media / 'nan.wav'}: NaN or inf in the audio, first at sample 8000 (0.500 s" in err
    # The paper's normalisation reads the audio through the resampling stream: refused the same way.
    err = refused(media, tmp_path, capsys, "bad,train,s1,nan.wav,,good.csv", "--audio-norm", "recording")
    assert "first at sample 8000 (0.500 s" in err


def test_audio_stream_stops_at_the_block_holding_the_first_inf(media):
    samples = speech_samples(3.0)
    samples[40000] = np.inf  # in the third 1 s block
    float_wav(media / "inf.wav", samples)
    blocks = iter_audio_blocks(media / "inf.wav", SAMPLE_RATE, SAMPLE_RATE)
    assert [len(next(blocks)) for _ in range(2)] == [SAMPLE_RATE, SAMPLE_RATE]
    with pytest.raises(MediaError, match=r"inf.wav: NaN or inf in the audio, first at sample 40000 \(2.500 s"):
        next(blocks)


class NanLandmarkDetector:
    """An MTCNN-like detector that finds one face everywhere, with NaN landmarks on frame ``bad``."""

    def __init__(self, bad):
        self.bad = bad
        self.calls = 0

    def detect_faces(self, image):
        self.calls += 1
        i = int(image[0, 0, 0])
        point = [np.nan, np.nan] if i == self.bad else [20.0, 20.0]
        names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
        return [{"box": [10, 10, 30, 30], "confidence": 0.99, "keypoints": dict.fromkeys(names, point)}]


def frames(n):
    return (np.full((48, 64, 3), i, np.uint8) for i in range(n))


def test_nan_face_detection_is_refused_naming_the_video_and_the_frame(tmp_path):
    config = FaceConfig(detect_every=1, smoothing=1)
    video = tmp_path / "talk.mp4"
    video.write_bytes(b"pretend video " * 100)
    with pytest.raises(MediaError, match=r"talk.mp4: the face detector returned NaN or inf for the face "
                                         r"of frame 6 \(0.24 s\)"):
        load_or_track_faces(video, config, tmp_path / "cache", lambda: frames(10), progress=False,
                            detector=NanLandmarkDetector(bad=6))


def test_cached_detections_holding_nan_are_detected_again(tmp_path, capsys):
    config = FaceConfig(detect_every=1, smoothing=1)
    video = tmp_path / "talk.mp4"
    video.write_bytes(b"pretend video " * 100)
    detector = NanLandmarkDetector(bad=-1)
    cache = cache_path(video, config, tmp_path / "cache", detector)
    cache.parent.mkdir()
    landmarks = np.full((10, 5, 2), 20.0, np.float32)
    landmarks[3, 2] = np.nan
    boxes = np.tile(np.array([10, 10, 40, 40], np.float32), (10, 1))
    FaceDetections(10, np.arange(10), np.ones(10, np.int8), boxes, landmarks).save(cache)
    with pytest.raises(MediaError, match=r"corrupt face detections \(NaN or inf at frame 3\)"):
        FaceDetections.load(cache)
    track = load_or_track_faces(video, config, tmp_path / "cache", lambda: frames(10), progress=False,
                                detector=detector)
    assert detector.calls == 10 and np.isfinite(track.landmarks).all()
    assert "corrupt face detections (NaN or inf at frame 3); detecting the faces again" in capsys.readouterr().err
    with pytest.raises(MediaError, match=r"face of frame 3 \(0.12 s\)"):
        build_track(FaceDetections(10, np.arange(10), np.ones(10, np.int8), boxes, landmarks), config, "v.mp4")


# --- 3. signals and labels outside their range ----------------------------------------------------


def test_audio_far_beyond_full_scale_is_refused_with_its_peak_and_time(media, tmp_path, capsys):
    samples = speech_samples(1.0) * 500 + 20  # float samples in the wrong units, with a DC offset
    peak = int(np.argmax(np.abs(samples)))
    float_wav(media / "loud.wav", samples)
    row = "bad,train,s1,loud.wav,,good.csv"
    err = refused(media, tmp_path, capsys, row)
    assert (f"{media / 'loud.wav'}: audio peak {abs(samples[peak]):.4g} at {peak / SAMPLE_RATE:.3f} s "
            "is outside full scale [-1, 1] by more than the limit 1.5, and a DC offset of 20") in err
    assert "rescale the file" in err and "--audio-norm recording" in err and "--audio-peak-limit" in err
    # Explicit choices build it: standardised per recording, or stored as read under a higher limit.
    csv = rows_csv(media / f"{tmp_path.name}.csv", row)
    assert build_cli(csv, tmp_path / "norm", "--audio-norm", "recording") == 0
    assert build_cli(csv, tmp_path / "raw", "--audio-peak-limit", "1000") == 0
    report = read_manifest(tmp_path / "raw").shards["bad"].report
    assert any(f"peaks at {abs(samples[peak]):.4g}" in line for line in report)
    assert any("DC offset of 20" in line for line in report)


def test_peak_just_above_full_scale_and_dc_offset_are_reported_in_the_summary(media, tmp_path, capsys):
    samples = speech_samples(1.0)
    samples = samples / np.abs(samples).max() * 1.2 + 0.05  # peak 1.25, mean 0.05
    float_wav(media / "hot.wav", samples)
    csv = rows_csv(media / f"{tmp_path.name}.csv", "hot,train,s1,hot.wav,,good.csv")
    capsys.readouterr()
    assert build_cli(csv, tmp_path / "out") == 0
    out = capsys.readouterr().out
    mean = float(np.mean(samples.astype(np.float64)))
    assert "reports (2):" in out
    assert f"hot: audio {media / 'hot.wav'} peaks at {np.abs(samples).max():.4g}" in out
    assert f"has a DC offset of {mean:.3g} (mean sample); stored as read" in out
    stored = read_audio(media / "hot.wav")
    np.testing.assert_array_equal(stored, samples)  # nothing clipped: stored as read, and said so


def test_labels_outside_the_range_are_refused_unless_the_range_is_given(media, tmp_path, capsys):
    write_labels(media / "x75.csv", scale=75.0)  # arousal -37.5..37.5, valence -22.5..7.5
    row = "bad,train,s1,good.wav,,x75.csv"
    err = refused(media, tmp_path, capsys, row)
    assert (f"{media / 'x75.csv'}: valence -22.5 at 0 s (row 0) is outside the label range [-1, 1]"
            in err)
    assert "--label-range LOW,HIGH" in err
    csv = rows_csv(media / f"{tmp_path.name}.csv", row)
    assert build_cli(csv, tmp_path / "wide", "--label-range=-100,100") == 0
    manifest = read_manifest(tmp_path / "wide")
    assert manifest.options["label_range"] == [-100.0, 100.0] and manifest.label_range == (-100.0, 100.0)
    result = validate_dataset(tmp_path / "wide")
    assert result.ok and result.warnings == []  # validated against the range it was built for
    # The default range is not written, so datasets built before the option keep their options.
    assert build_cli(rows_csv(media / "ok.csv", "ok,train,s1,good.wav,,good.csv"), tmp_path / "ok") == 0
    assert "label_range" not in read_manifest(tmp_path / "ok").options
    with pytest.raises(LabelError, match=r"arousal 0.1 at 0.04 s \(row 1\) is outside the label range \[0.2, 1\]"):
        from emorec.media.labels import LabelTrack

        track = LabelTrack([0.0, 0.04], [[0.5, 0.5], [0.1, 0.5]])
        source = RecordingSource("r", "train", "s", audio=media / "good.wav", labels=track)
        prepare_recording(source, BuildOptions(modalities=("audio",), label_range=(0.2, 1.0)))


# --- 4. one build per output directory ------------------------------------------------------------


def test_a_second_build_into_a_locked_directory_stops_naming_the_holder(media, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    go = threading.Event()
    original = build.build_shard

    def slow_shard(*args, **kwargs):
        assert go.wait(60)
        return original(*args, **kwargs)

    monkeypatch.setattr(build, "build_shard", slow_shard)
    results = []
    first = threading.Thread(target=lambda: results.append(build.build_dataset(
        read_recordings_csv(media / "two.csv"), out, BuildOptions(modalities=("audio",), window=0.4),
        "manifest", progress=False)))
    first.start()
    deadline = time.time() + 30
    while not (out / LOCK_NAME).exists() and time.time() < deadline:
        time.sleep(0.01)
    capsys.readouterr()
    assert build_cli(media / "two.csv", out, "--window", "0.8") == 2
    err = capsys.readouterr().err
    assert (f"error: {out / LOCK_NAME}: another build is writing {out}: pid {os.getpid()} on host "
            f"{socket.gethostname()}, since ") in err
    go.set()
    first.join(60)
    assert results and results[0].is_complete and results[0].options["window"] == 0.4
    assert read_manifest(out).options["window"] == 0.4 and leftovers(out) == []


def write_lock(out: Path, **holder):
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(json.dumps({"started": "2026-01-01T00:00:00+00:00", **holder}))


def test_stale_and_foreign_locks(media, tmp_path, capsys):
    out = tmp_path / "out"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        write_lock(out, pid=sleeper.pid, host=socket.gethostname())
        capsys.readouterr()
        assert build_cli(media / "two.csv", out) == 2
        assert f"another build is writing {out}: pid {sleeper.pid} on host" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()
    # Its process is gone: the lock is stale, taken over with a warning, and released at the end.
    assert build_cli(media / "two.csv", out) == 0
    assert f"taking over the lock of a build that is gone (pid {sleeper.pid}" in capsys.readouterr().err
    assert leftovers(out) == [] and validate_dataset(out).ok
    # A live pid that now belongs to another process (its start time differs) is stale too.
    write_lock(out, pid=os.getpid(), host=socket.gethostname(), process_start="1")
    assert build_cli(media / "two.csv", out) == 0 and leftovers(out) == []
    # Another host's process cannot be checked: refused, saying how to clear it.
    write_lock(out, pid=1, host="elsewhere.invalid")
    with pytest.raises(BuildLockedError, match="pid 1 on host elsewhere.invalid.*delete the lock file"):
        build.build_dataset(read_recordings_csv(media / "two.csv"), out, BuildOptions(modalities=("audio",)),
                            "manifest", progress=False)
    (out / LOCK_NAME).write_text("{half a lock")
    with pytest.raises(BuildLockedError, match="its lock file cannot be read"):
        build.build_dataset(read_recordings_csv(media / "two.csv"), out, BuildOptions(modalities=("audio",)),
                            "manifest", progress=False)


def test_lock_is_released_on_error_and_on_ctrl_c(media, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    write_labels(media / "x5.csv", scale=5.0)
    rows_csv(media / "with_bad.csv", "a,train,s1,good.wav,,good.csv", "z,train,s2,good.wav,,x5.csv")
    assert build_cli(media / "with_bad.csv", out) == 2
    assert "x5.csv: valence -1.5 at 0 s (row 0) is outside the label range" in capsys.readouterr().err
    assert not (out / LOCK_NAME).exists() and read_manifest(out).missing == ["z"]

    def interrupted(source, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "build_shard", interrupted)
    assert build_cli(media / "two.csv", tmp_path / "ctrl_c") == 130
    assert not (tmp_path / "ctrl_c" / LOCK_NAME).exists()


# --- 5. a build that stopped early is never taken for a finished dataset --------------------------


class FullDisk:
    """A TFRecordWriter whose writes fail, as on a full disk, for shards whose path holds ``victim``."""

    victim = "/b.tfrecord"
    kind = "oserror"
    real = tf.io.TFRecordWriter

    def __init__(self, path, *args):
        self.path = str(path)
        self.writer = self.real(path, *args)

    def write(self, record):
        if f"/.{self.victim[1:]}" in self.path:
            if self.kind == "oserror":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
            raise tf.errors.ResourceExhaustedError(None, None, f"{self.path}; No space left on device")
        self.writer.write(record)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.writer.close()


@pytest.mark.parametrize("kind", ["oserror", "tensorflow"])
def test_disk_full_is_an_error_naming_the_file_and_leaves_an_incomplete_manifest(
        media, tmp_path, capsys, monkeypatch, kind):
    out = tmp_path / "out"
    monkeypatch.setattr(FullDisk, "kind", kind)
    monkeypatch.setattr(tf.io, "TFRecordWriter", FullDisk)
    capsys.readouterr()
    assert build_cli(media / "two.csv", out) == 2
    err = capsys.readouterr().err
    assert f"error: {out / 'train' / 'b.tfrecord'}: no space left on device; the build stopped" in err
    assert "Traceback" not in err and leftovers(out) == []
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["complete"] is False and doc["missing"] == ["b"] and [s["recording_id"] for s in doc["shards"]] == ["a"]

    assert cli_main(["validate", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert (f"error: {out / 'manifest.json'}: incomplete dataset: the build stopped with 1 of 2 recordings "
            f"not written (b); rerun the same `emorec build manifest ...` command into {out} to finish it") in err
    with pytest.raises(DatasetError, match="incomplete dataset"):
        DatasetHandle.open(out)
    assert DatasetHandle.open(out, allow_incomplete=True).manifest.shards.keys() == {"a"}

    monkeypatch.undo()  # space freed: the same command finishes the build
    assert build_cli(media / "two.csv", out) == 0
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["complete"] is True and doc["missing"] == [] and validate_dataset(out).ok


def test_disk_full_while_writing_the_manifest(media, tmp_path, capsys, monkeypatch):
    import emorec.manifest

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(emorec.manifest, "atomic_write_bytes", full)
    capsys.readouterr()
    assert build_cli(media / "two.csv", tmp_path / "out") == 2
    assert f"error: {tmp_path / 'out' / 'manifest.json'}: no space left on device" in capsys.readouterr().err
    assert build.storage_error("x", OSError(errno.EDQUOT, "quota")).args[0].startswith("x: disk quota exceeded")
    assert build.storage_error("x", OSError(errno.EACCES, "denied")) is None
    assert build.storage_error("x", ValueError("no")) is None


def test_interrupted_build_is_incomplete_until_a_rerun_finishes_it(media, tmp_path, capsys, monkeypatch):
    # The manifest a kill leaves is the one written after the last finished recording: the same
    # as after Ctrl-C here (test_kill_9_leaves_an_incomplete_manifest does it with a real kill).
    out = tmp_path / "out"
    original = build.build_shard

    def stop_at_b(source, *args, **kwargs):
        if source.recording_id == "b":
            raise KeyboardInterrupt
        return original(source, *args, **kwargs)

    monkeypatch.setattr(build, "build_shard", stop_at_b)
    assert build_cli(media / "two.csv", out) == 130
    manifest = read_manifest(out)
    assert not manifest.is_complete and manifest.missing == ["b"] and set(manifest.shards) == {"a"}
    monkeypatch.undo()
    # Training refuses it, saying how to finish it.
    capsys.readouterr()
    assert cli_main(["train", "--model", "e2e_audio", "--data", str(out), "--out", str(tmp_path / "run"),
                     "--no-progress"]) == 2
    assert "incomplete dataset" in capsys.readouterr().err
    # Recordings no longer asked for are not missing any more: a rerun without b completes it.
    rows_csv(media / "only_a.csv", "a,train,s1,good.wav,,good.csv")
    assert build_cli(media / "only_a.csv", out) == 0
    assert read_manifest(out).is_complete and validate_dataset(out).ok


def test_manifests_without_the_fields_read_as_complete(media, tmp_path):
    out = tmp_path / "out"
    assert build_cli(media / "two.csv", out) == 0
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["complete"] is True and doc["missing"] == []
    del doc["complete"], doc["missing"]  # as written before builds recorded their progress
    (out / "manifest.json").write_text(json.dumps(doc))
    assert read_manifest(out).is_complete and validate_dataset(out).ok and DatasetHandle.open(out)
    doc["complete"] = "yes"
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(SchemaError, match="complete must be true or false"):
        read_manifest(out)


@pytest.mark.slow
def test_kill_9_leaves_an_incomplete_manifest(media, tmp_path):
    for k in range(6):
        shutil.copy(media / "good.wav", media / f"k{k}.wav")
    csv = rows_csv(media / "six.csv", *(f"k{k},train,s{k},k{k}.wav,,good.csv" for k in range(6)))
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-m", "emorec.cli", "build", "manifest", str(csv), str(out),
                             *AUDIO_ONLY], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "manifest.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = read_manifest(out)
    assert not manifest.is_complete and 1 <= len(manifest.shards) < 6
    assert sorted(manifest.missing) == sorted(set(f"k{k}" for k in range(6)) - set(manifest.shards))
    result = validate_dataset(out)
    assert not result.ok and "incomplete dataset" in result.errors[0]
    assert any("a build is writing this dataset, or one was killed" in w for w in result.warnings)
    # The dead build's lock is stale: the rerun takes it over and finishes.
    assert build_cli(csv, out) == 0 and validate_dataset(out).ok and leftovers(out) == []


# --- 7. messages that say what is wrong -----------------------------------------------------------


def test_symlink_loop_broken_link_directory_and_empty_file(media, tmp_path, capsys):
    loop = media / "loop.wav"
    if not loop.is_symlink():
        os.symlink("loop.wav", loop)
    err = refused(media, tmp_path, capsys, "bad,train,s1,loop.wav,,good.csv")
    assert f"audio file {loop} is a symbolic link loop" in err and "does not exist" not in err
    (media / "empty.wav").write_bytes(b"")
    err = refused(media, tmp_path, capsys, "bad,train,s1,empty.wav,,good.csv")
    assert f"audio file {media / 'empty.wav'} is empty (0 bytes)" in err and "Invalid data" not in err
    broken = media / "broken.wav"
    if not broken.is_symlink():
        os.symlink("moved_away.wav", broken)
    assert file_problem(broken) == "is a broken symbolic link (to moved_away.wav, which does not exist)"
    assert file_problem(media) == "is a directory, not a file"
    # The same words where a file is opened without a CSV (RECOLA folders, prediction).
    with pytest.raises(MediaError, match=r"loop.wav: is a symbolic link loop"):
        read_audio(loop)
    with pytest.raises(MediaError, match=r"empty.wav: is empty \(0 bytes\)"):
        read_audio(media / "empty.wav")
    source = RecordingSource("r", "train", "s", audio=media / "empty.wav")
    with pytest.raises(MediaError, match=r"empty.wav: is empty \(0 bytes\) \(recording r\)"):
        prepare_recording(source, BuildOptions(modalities=("audio",)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import _tiny_model
    from dataset_factory import make_dataset_dir

    root = tmp_path_factory.mktemp("tiny")
    data, _ = make_dataset_dir(root, recordings={"train": 3, "dev": 1}, frames=[45, 38, 50],
                               window_frames=10, modalities=("audio",))
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(_tiny_model.tiny_config(epochs=1)))
    return ["--model", _tiny_model.NAME, "--config", str(config), "--data", str(data), "--no-progress"]


def test_bad_set_value_is_blamed_on_the_flag(tiny_run, tmp_path, capsys):
    assert cli_main(["train", *tiny_run, "--out", str(tmp_path / "run"), "--set", "data.batch_size=abc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set data.batch_size=abc: data.batch_size must be a positive")
    assert "tiny.yaml" not in err


def test_resume_says_from_which_checkpoint_and_step(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(["train", *tiny_run, "--out", str(run)]) == 0
    capsys.readouterr()
    # 3 batches of 4 windows per epoch: the epoch-end checkpoint is step 3, epoch 1 done.
    assert cli_main(["train", *tiny_run, "--out", str(run), "--resume", "--epochs", "2"]) == 0
    err = capsys.readouterr().err
    checkpoint = run / "checkpoints" / "latest" / "ckpt-"
    assert f"resumed from {checkpoint}" in err and "at step 3 (epoch 2, batch 0 of it)" in err

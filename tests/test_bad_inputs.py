"""Bad inputs: each gives a message naming the file and the problem, and leaves nothing half-written."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from media_samples import astronaut_face_video, speech_wav

from emorec.cli import main as cli_main
from emorec.corpus.validate import validate_dataset
from emorec.errors import AlignmentError, LabelError, MediaError
from emorec.manifest import read_manifest
from emorec.media.write import write_wav
from emorec.recording import BuildOptions, RecordingSource, prepare_recording

REPO = Path(__file__).resolve().parents[1]
HEADER = "recording,partition,subject,audio,video,labels"


def write_labels(path, times, arousal=None, valence=None):
    times = np.asarray(times, dtype=float)
    arousal = np.zeros_like(times) if arousal is None else arousal
    valence = np.zeros_like(times) if valence is None else valence
    rows = [f"{t},{a},{v}" for t, a, v in zip(times, arousal, valence)]
    Path(path).write_text("time,arousal,valence\n" + "\n".join(rows) + "\n")
    return path


def emorec_leftovers(out: Path) -> list[str]:
    """Temporary files anywhere under ``out`` (a killed or failed build must not leave any)."""
    return [str(p) for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A 1 s speech wav with matching labels, and a dataset built from it (audio only)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    speech_wav(root / "good.wav", seconds=1.0)
    write_labels(root / "good.csv", np.arange(26) * 0.04)
    (root / "good_rows.csv").write_text(f"{HEADER}\ngood,train,s1,good.wav,,good.csv\n")
    dataset = root / "dataset"
    assert cli_main(["build", "manifest", str(root / "good_rows.csv"), str(dataset),
                       "--modalities", "audio", "--no-progress"]) == 0
    return root


def build_with_bad_row(media, tmp_path, row, capsys, extra=("--modalities", "audio")):
    """Add ``row`` to the good recording's CSV, rebuild a copy of the dataset; return stderr."""
    out = tmp_path / "dataset"
    shutil.copytree(media / "dataset", out)
    before = (out / "manifest.json").read_bytes()
    csv = media / f"rows_{tmp_path.name}.csv"
    csv.write_text(f"{HEADER}\ngood,train,s1,good.wav,,good.csv\n{row}\n")
    capsys.readouterr()
    assert cli_main(["build", "manifest", str(csv), str(out), *extra, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "\nerror: " in "\n" + err
    # Nothing half-written: the manifest is unchanged, no shard or temporary file for "bad".
    assert (out / "manifest.json").read_bytes() == before
    assert not list(out.rglob("bad.tfrecord")) and emorec_leftovers(out) == []
    return err


def test_missing_file(media, tmp_path, capsys):
    err = build_with_bad_row(media, tmp_path, "bad,train,s2,nowhere.wav,,", capsys)
    assert f"line 3: audio file {media / 'nowhere.wav'} does not exist" in err
    source = RecordingSource("bad", "train", "s2", audio=media / "gone.wav")
    with pytest.raises(MediaError, match=r"gone.wav: no such file \(recording bad\)"):
        prepare_recording(source, BuildOptions(modalities=("audio",)))


def test_truncated_wav(media, tmp_path, capsys):
    data = (media / "good.wav").read_bytes()
    (media / "cut.wav").write_bytes(data[: len(data) // 2])
    err = build_with_bad_row(media, tmp_path, "bad,train,s2,cut.wav,,", capsys)
    assert "cut.wav: truncated wav" in err


def test_corrupt_wav(media, tmp_path, capsys):
    (media / "noise.wav").write_bytes(b"RIFF\x00\x00\x00\x00not a wave file at all" * 10)
    err = build_with_bad_row(media, tmp_path, "bad,train,s2,noise.wav,,", capsys)
    assert "noise.wav" in err and ("cannot open" in err or "corrupt" in err or "truncated" in err)


def test_zero_length_audio(media, tmp_path, capsys):
    write_wav(media / "empty.wav", np.zeros(0, np.float32), 16000)
    err = build_with_bad_row(media, tmp_path, "bad,train,s2,empty.wav,,", capsys)
    assert "empty.wav" in err and "zero samples" in err


def test_audio_shorter_than_a_frame(media):
    write_wav(media / "tiny.wav", np.zeros(100, np.float32), 16000)
    source = RecordingSource("bad", "train", "s2", audio=media / "tiny.wav")
    with pytest.raises(MediaError, match=r"tiny.wav: too short for one 0.04 s frame"):
        prepare_recording(source, BuildOptions(modalities=("audio",)))


def test_labels_much_shorter_or_longer(media, tmp_path, capsys):
    write_labels(media / "short.csv", np.arange(6) * 0.04)  # 0.2 s of labels for 1 s of audio
    err = build_with_bad_row(media, tmp_path, "bad,train,s2,good.wav,,short.csv", capsys)
    assert "short.csv covers 0.20 s (5 frames)" in err and "good.wav 1.00 s (25 frames)" in err
    assert "differ by 0.80 s, more than the 0.5 s tolerance" in err

    write_labels(media / "long.csv", np.arange(101) * 0.04)  # 4 s
    source = RecordingSource("bad", "train", "s2", audio=media / "good.wav", labels=media / "long.csv")
    with pytest.raises(AlignmentError, match=r"long.csv covers 4.00 s \(100 frames\).*1.00 s \(25 frames\)"):
        prepare_recording(source, BuildOptions(modalities=("audio",)))
    # Within a wider tolerance the same file is accepted (and trimmed).
    prepared = prepare_recording(source, BuildOptions(modalities=("audio",), tolerance_s=3.0))
    assert prepared.num_frames == 25 and "labels trimmed (75 frames)" in prepared.report[0]


def test_nan_in_labels(media, tmp_path, capsys):
    values = np.zeros(26)
    values[7] = np.nan
    write_labels(media / "nan.csv", np.arange(26) * 0.04, arousal=values)
    err = build_with_bad_row(media, tmp_path, "bad,train,s2,good.wav,,nan.csv", capsys)
    assert re.search(r"nan.csv: (row|line) 9: arousal is not a finite number", err)


def test_non_monotonic_label_times(media):
    times = np.arange(26) * 0.04
    times[[10, 11]] = times[[11, 10]]
    write_labels(media / "order.csv", times)
    source = RecordingSource("bad", "train", "s2", audio=media / "good.wav", labels=media / "order.csv")
    with pytest.raises(LabelError, match=r"order.csv: (row|line) 13: time 0.4 does not increase \(previous 0.44\)"):
        prepare_recording(source, BuildOptions(modalities=("audio",)))


def test_nan_in_a_label_track_given_directly(media):
    from emorec.media.labels import LabelTrack

    track = LabelTrack(np.arange(26) * 0.04, np.zeros((26, 2)))
    track.values[3, 1] = np.nan
    source = RecordingSource("bad", "train", "s2", audio=media / "good.wav", labels=track)
    with pytest.raises(LabelError, match=r"labels of recording bad\): NaN or inf in the labels \(row 3"):
        prepare_recording(source, BuildOptions(modalities=("audio",)))


def test_unknown_partition_cli(media, tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text(f"{HEADER}\ngood,train,s1,{media / 'good.wav'},,\nbad,validation,s2,{media / 'good.wav'},,\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecords_tools.build", "manifest", str(csv), str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 2
    assert f"error: {csv}: line 3: unknown partition 'validation' for recording bad" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_file_cli(media, tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text(f"{HEADER}\nbad,dev,s2,,missing.mp4,\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecords_tools.build", "manifest", str(csv), str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 2
    assert f"error: {csv}: line 2: video file {tmp_path / 'missing.mp4'} does not exist" in proc.stderr


def test_unwritable_output_directory(media, tmp_path):
    # Tests run as root, where chmod does not stop writes: put OUT under a regular file.
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "sub"
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecords_tools.build", "manifest", str(media / "good_rows.csv"),
         str(out), "--modalities", "audio"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 2
    assert f"error: {out}: cannot write the output directory" in proc.stderr
    assert blocker.read_text() == "not a directory"


def test_mp4_without_audio(media, tmp_path):
    astronaut_face_video(media / "silent.mp4", seconds=0.4, size=(96, 72), with_audio=False)
    source = RecordingSource("bad", "train", "s2", video=media / "silent.mp4")
    with pytest.raises(MediaError, match=r"silent.mp4: has no audio stream and recording bad has no audio file"):
        prepare_recording(source, BuildOptions())


def test_video_without_any_face(media, tmp_path, capsys):
    astronaut_face_video(media / "noface.mp4", seconds=0.4, size=(96, 72), face_from=5.0)
    csv = tmp_path / "rows.csv"
    csv.write_text(f"{HEADER}\nbad,train,s2,,{media / 'noface.mp4'},\n")
    out = tmp_path / "out"
    assert cli_main(["build", "manifest", str(csv), str(out), "--cache-dir", str(tmp_path / "faces"),
                       "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "noface.mp4: no detectable face in any of its 10 frames" in err
    assert not (out / "manifest.json").exists() and not list(out.rglob("*.tfrecord"))
    assert emorec_leftovers(out) == []


def test_truncated_shard_is_repaired_by_a_rerun(media, tmp_path, capsys):
    out = tmp_path / "dataset"
    shutil.copytree(media / "dataset", out)
    shard = out / "train" / "good.tfrecord"
    good_bytes = shard.read_bytes()
    with open(shard, "r+b") as handle:  # as if the build had been killed while writing it
        handle.truncate(len(good_bytes) // 3)
    (out / "train" / ".good.tfrecord.abc123.tmp").write_bytes(b"half")
    capsys.readouterr()
    assert cli_main(["validate", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: {shard}: {len(good_bytes) // 3} bytes, the manifest says {len(good_bytes)}" in err
    assert f"error: {shard}: window 0: unreadable record, truncated or corrupt file" in err
    assert "temporary file left by a killed build" in err

    assert cli_main(["build", "manifest", str(media / "good_rows.csv"), str(out), "--modalities", "audio",
                       "--no-progress"]) == 0
    assert shard.read_bytes() == good_bytes and emorec_leftovers(out) == []
    assert validate_dataset(out).ok


def test_manifest_of_another_schema_version(media, tmp_path, capsys):
    out = tmp_path / "dataset"
    shutil.copytree(media / "dataset", out)
    doc = json.loads((out / "manifest.json").read_text())
    doc["schema_version"] = 0
    (out / "manifest.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert cli_main(["validate", str(out), "--no-progress"]) == 2
    assert "dataset has schema version 0, this emorec reads version 1" in capsys.readouterr().err
    args = ["manifest", str(media / "good_rows.csv"), str(out), "--modalities", "audio", "--no-progress"]
    assert cli_main(["build", *args]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'manifest.json'}: dataset has schema version 0" in err and "--force" in err
    assert cli_main(["build", *args, "--force"]) == 0
    assert read_manifest(out).schema_version == 1 and validate_dataset(out).ok

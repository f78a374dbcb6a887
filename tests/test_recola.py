"""The RECOLA (AVEC 2016 layout) adapter: partitions, subjects, gold standard, splits."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from media_samples import gold_values, recola_fixture
from scipy.signal import resample_poly

from emorec.cli import main as cli_main
from emorec.corpus.adapters.recola import read_subject_map, recola_sources
from emorec.corpus.validate import validate_dataset
from emorec.errors import ConfigError, LabelError, MediaError
from emorec.manifest import read_manifest
from emorec.schema import FRAME_PERIOD, decode_window

RECORDINGS = ("train_1", "train_2", "dev_1", "test_1")


def windows_of(data_dir, recording_id):
    manifest = read_manifest(data_dir)
    path = Path(data_dir) / manifest.shards[recording_id].path
    return [decode_window(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]


def stitched(windows, key):
    return np.concatenate([getattr(w, key)[: int(w.valid.sum())] for w in windows])


@pytest.fixture(scope="module")
def recola_audio(tmp_path_factory):
    """RECOLA layout with 2 s recordings, 44.1 kHz wavs, gold standard, no videos."""
    return recola_fixture(tmp_path_factory.mktemp("recola"), recordings=RECORDINGS, video_size=None)


def write_map(path, rows, partition=True):
    header = "recording,subject,partition" if partition else "recording,subject"
    Path(path).write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return path


def test_sources_from_file_names(recola_audio):
    sources = recola_sources(recola_audio.root, modalities=("audio",))
    assert [(s.recording_id, s.partition, s.subject_id) for s in sources] == [
        ("dev_1", "dev", "dev_1"), ("test_1", "test", "test_1"),
        ("train_1", "train", "train_1"), ("train_2", "train", "train_2"),
    ]
    by_id = {s.recording_id: s for s in sources}
    assert by_id["test_1"].labels is None  # AVEC 2016 ships no test gold standard
    track = by_id["train_2"].labels
    arousal, valence = gold_values(1, np.arange(51) * FRAME_PERIOD)
    np.testing.assert_allclose(track.values[:, 0], arousal, atol=1e-6)
    np.testing.assert_allclose(track.values[:, 1], valence, atol=1e-6)


@pytest.mark.parametrize("alignment, offset", [("end", 1), ("start", 0)])
def test_build_labels_equal_the_arff_values(recola_audio, tmp_path, alignment, offset):
    out = tmp_path / "ds"
    assert cli_main(["build", "recola", str(recola_audio.root), str(out), "--modalities", "audio",
                       "--window", "0.4", "--label-alignment", alignment, "--no-progress"]) == 0
    assert validate_dataset(out).ok
    manifest = read_manifest(out)
    summary = manifest.partition_summary()
    assert summary["train"]["recordings"] == ["train_1", "train_2"]
    assert summary["dev"]["recordings"] == ["dev_1"] and summary["test"]["recordings"] == ["test_1"]
    assert summary["train"]["has_labels"] and not summary["test"]["has_labels"]
    assert manifest.options["source"] == "recola"
    for k, rid in enumerate(RECORDINGS):
        shard = manifest.shards[rid]
        assert shard.frames == 50 and shard.windows == 5
        windows = windows_of(out, rid)
        if rid.startswith("test"):
            assert not shard.has_labels and all(w.labels is None for w in windows)
            continue
        # Frame i takes ARFF row i + 1 ("end", the original code) or row i ("start", End2You).
        rows = np.arange(50) + offset
        arousal, valence = gold_values(k, rows * FRAME_PERIOD)
        labels = stitched(windows, "labels")
        np.testing.assert_allclose(labels[:, 0], arousal, atol=1e-6)
        np.testing.assert_allclose(labels[:, 1], valence, atol=1e-6)
        if alignment == "start":  # the 51st row (2.0 s) is left over
            gold = recola_audio.root / "ratings_gold_standard"
            assert shard.report == [
                f"{rid}: labels {gold}/{{arousal,valence}}/{rid}.arff covers 2.04 s (51 frames), "
                f"audio {recola_audio.recordings[rid].audio_path} 2.00 s (50 frames); "
                "labels trimmed (1 frames)"
            ]
        else:
            assert shard.report == []


def test_subject_map_with_the_avec_split(recola_audio, tmp_path):
    smap = write_map(tmp_path / "subjects.csv", [["train_1", "P16"], ["dev_1", "P21"]], partition=False)
    sources = {s.recording_id: s for s in recola_sources(recola_audio.root, "avec", smap, ("audio",))}
    assert sources["train_1"].subject_id == "P16" and sources["dev_1"].subject_id == "P21"
    assert sources["train_2"].subject_id == "train_2"  # not in the map: its own subject
    conflict = write_map(tmp_path / "bad.csv", [["train_1", "P16", "dev"]])
    with pytest.raises(ConfigError, match="train_1 is in partition train by its name but dev"):
        recola_sources(recola_audio.root, "avec", conflict, ("audio",))


def test_paper_split_takes_partitions_from_the_map(recola_audio, tmp_path):
    rows = [["train_1", "P16", "train"], ["train_2", "P17", "dev"],
            ["dev_1", "P18", "test"], ["test_1", "P19", "test"]]
    smap = write_map(tmp_path / "paper.csv", rows)
    assert read_subject_map(smap)["train_2"] == ("P17", "dev")
    # test_1 has no gold standard, and the paper's test partition may be unlabelled.
    sources = {s.recording_id: s for s in recola_sources(recola_audio.root, "paper", smap, ("audio",))}
    assert {rid: (s.partition, s.subject_id) for rid, s in sources.items()} == {
        "train_1": ("train", "P16"), "train_2": ("dev", "P17"),
        "dev_1": ("test", "P18"), "test_1": ("test", "P19"),
    }
    assert sources["dev_1"].labels is not None and sources["test_1"].labels is None

    with pytest.raises(ConfigError, match="--subject-map"):
        recola_sources(recola_audio.root, "paper", None, ("audio",))
    spanning = write_map(tmp_path / "span.csv", [r if r[0] != "train_2" else ["train_2", "P16", "dev"] for r in rows])
    with pytest.raises(ConfigError, match="subject P16 is in partitions dev, train"):
        recola_sources(recola_audio.root, "paper", spanning, ("audio",))
    partial = write_map(tmp_path / "partial.csv", rows[:3])
    with pytest.raises(ConfigError, match="no partition for recording"):
        recola_sources(recola_audio.root, "paper", partial, ("audio",))
    unlabelled = write_map(tmp_path / "unlab.csv", [r if r[0] != "test_1" else ["test_1", "P19", "train"] for r in rows])
    with pytest.raises(LabelError, match="test_1.arff: no gold standard for recording test_1"):
        recola_sources(recola_audio.root, "paper", unlabelled, ("audio",))


def test_missing_gold_standard_outside_test(recola_audio, tmp_path):
    root = tmp_path / "recola"
    shutil.copytree(recola_audio.root, root)
    (root / "ratings_gold_standard" / "valence" / "dev_1.arff").unlink()
    with pytest.raises(LabelError, match=r"valence/dev_1.arff: no gold standard for recording dev_1"):
        recola_sources(root, modalities=("audio",))
    with pytest.raises(MediaError, match=r"recordings_video/dev_1.mp4: no such video \(recording dev_1\)"):
        recola_sources(recola_audio.root, modalities=("audio", "video"))


def test_video_modalities_and_audio_from_the_video(tmp_path):
    fixture = recola_fixture(tmp_path / "recola", recordings=("train_1", "test_1"), video_size=(160, 120))
    root = fixture.root
    cache = tmp_path / "faces"
    out = tmp_path / "video"
    assert cli_main(["build", "recola", str(root), str(out), "--modalities", "video", "--window", "0.4",
                       "--face-size", "48", "--cache-dir", str(cache), "--no-progress"]) == 0
    windows = windows_of(out, "train_1")
    assert all(w.audio is None and w.faces is not None for w in windows)
    assert stitched(windows, "face_found").tolist() == [1] * 50
    assert validate_dataset(out).ok

    # No wav for train_1: its audio comes from the video's sound track.
    (root / "recordings_audio" / "train_1.wav").unlink()
    sources = {s.recording_id: s for s in recola_sources(root, modalities=("audio",))}
    assert sources["train_1"].audio is None and sources["train_1"].video.name == "train_1.mp4"
    out = tmp_path / "audio"
    assert cli_main(["build", "recola", str(root), str(out), "--modalities", "audio", "--window", "0.4",
                       "--no-progress"]) == 0
    audio = stitched(windows_of(out, "train_1"), "audio").ravel()
    reference = resample_poly(fixture.recordings["train_1"].audio.astype(np.float64), 160, 441)
    assert len(audio) == 50 * 640
    assert np.corrcoef(audio, reference[: len(audio)])[0, 1] > 0.98

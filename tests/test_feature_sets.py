"""Feature sets in the records: schema, manifest, build from released ARFF files, read-time z-scores, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from feature_samples import feature_corpus, write_feature_arff

from emorec.cli import main as cli_main
from emorec.data import ReadSpec, make_dataset, read_recordings
from emorec.dataset import DatasetHandle
from emorec.feature_norm import FeatureMoments, normalization, pool, scale_of
from emorec.manifest import read_manifest
from emorec.schema import SchemaError, WindowRecord, decode_window, encode_window


def test_window_record_features_round_trip():
    t = 4
    window = WindowRecord("r1", "s1", "train", 8, valid=np.array([1, 1, 1, 0]),
                          labels=np.zeros((t, 2), np.float32),
                          features={"a": np.arange(t * 3, dtype=np.float32).reshape(t, 3),
                                    "b": np.full((t, 1), 0.5, np.float32)})
    back = decode_window(encode_window(window))
    assert back.audio is None and back.faces is None and set(back.features) == {"a", "b"}
    np.testing.assert_array_equal(back.features["a"], window.features["a"])
    np.testing.assert_array_equal(back.features["b"], window.features["b"])
    with pytest.raises(SchemaError, match="feature set a has shape"):
        WindowRecord("r1", "s1", "train", 0, valid=np.ones(t), features={"a": np.zeros((t + 1, 3))}).check()
    with pytest.raises(SchemaError, match="NaN or inf"):
        WindowRecord("r1", "s1", "train", 0, valid=np.ones(t), features={"a": np.full((t, 2), np.nan)}).check()
    with pytest.raises(SchemaError, match="feature set name"):
        WindowRecord("r1", "s1", "train", 0, valid=np.ones(t), features={"a-b": np.zeros((t, 2))}).check()


def test_moments_pool_and_scale_match_numpy():
    rng = np.random.default_rng(0)
    parts = [rng.normal(k, k + 1, size=(50 + 10 * k, 3)) for k in range(3)]
    stats = []
    for part in parts:
        moments = FeatureMoments(3)
        moments.add(part[:20])
        moments.add(part[20:])
        np.testing.assert_allclose(moments.mean, part.mean(0))
        np.testing.assert_allclose(moments.std, part.std(0))
        stats.append(moments.to_dict())
    mean, std = pool(stats)
    everything = np.concatenate(parts)
    np.testing.assert_allclose(mean, everything.mean(0))
    np.testing.assert_allclose(std, everything.std(0))
    np.testing.assert_array_equal(scale_of(np.array([0.0, 1e-9, 2.0])), [1.0, 1.0, 2.0])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    return root, feature_corpus(root, seconds=4.0)


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    root, values = corpus
    out = tmp_path_factory.mktemp("ds") / "ds"
    code = cli_main(["build", "recola", str(root), str(out), "--features", "cues,other", "--modalities", "none",
                     "--window", "1", "--no-progress", "-q"])
    assert code == 0
    return out, values


def test_build_stores_released_features(built):
    out, values = built
    manifest = read_manifest(out)
    assert manifest.options["modalities"] == [] and manifest.feature_dims == {"cues": 3, "other": 3}
    assert manifest.feature_sets["cues"].names == ["cue_a", "cue_v", "cue_n"]
    assert manifest.feature_sets["cues"].source == "released"
    assert manifest.feature_sets["cues"].path == "features_cues"
    from emorec.corpus.validate import validate_dataset

    checked = validate_dataset(out)
    assert not checked.errors and not checked.warnings and checked.windows == 6 * 4
    doc = json.loads((out / "manifest.json").read_text())
    assert [f["name"] for f in doc["feature_sets"]] == ["cues", "other"]
    for rid, (times, _, _, sets) in values.items():
        stats = manifest.shards[rid].feature_stats["cues"]
        assert stats["count"] == len(times)
        np.testing.assert_allclose(stats["mean"], sets["cues"].mean(0), atol=1e-5)
        np.testing.assert_allclose(stats["std"], sets["cues"].std(0), atol=1e-5)
    arrays = dict(read_recordings(out, "train", (), features=("cues", "other")))
    times, arousal, valence, sets = values["train_2"]
    np.testing.assert_allclose(arrays["train_2"]["features_cues"], sets["cues"], atol=1e-5)
    np.testing.assert_allclose(arrays["train_2"]["labels"][:, 0], arousal, atol=1e-6)
    assert set(arrays["train_2"]) == {"mask", "features_cues", "features_other", "labels"}


def test_read_time_z_scores(built):
    out, values = built
    data = DatasetHandle.open(out)
    for rid, arrays in read_recordings(data, "dev", (), features=("cues",), feature_norm="speaker"):
        raw = values[rid][3]["cues"]
        np.testing.assert_allclose(arrays["features_cues"], (raw - raw.mean(0)) / raw.std(0), atol=1e-4)
    train = np.concatenate([values[r][3]["cues"] for r in ("train_1", "train_2", "train_3")])
    for rid, arrays in read_recordings(data, "dev", (), features=("cues",), feature_norm="train"):
        raw = values[rid][3]["cues"]
        np.testing.assert_allclose(arrays["features_cues"], (raw - train.mean(0)) / train.std(0), atol=1e-4)
    means, scales = normalization(data, "dev", ("cues",), "speaker")["cues"]
    assert means.shape == scales.shape == (2, 3)
    # Batches: padding frames stay 0, real frames are z-scored like the whole recordings.
    spec = ReadSpec(batch_size=4, modalities=(), features=("cues",), feature_norm="speaker")
    whole = dict(read_recordings(data, "dev", (), features=("cues",), feature_norm="speaker"))
    for batch in make_dataset(data, "dev", spec):
        for row in range(batch["mask"].shape[0]):
            rid = batch["recording_id"][row].numpy().decode()
            start = int(batch["start_frame"][row])
            real = batch["mask"][row].numpy() > 0
            got = batch["features_cues"][row].numpy()
            np.testing.assert_allclose(got[real], whole[rid]["features_cues"][start:start + real.sum()], atol=1e-5)
            assert not got[~real].any()


def test_feature_only_reads_need_something(built):
    out, _ = built
    from emorec.errors import ConfigError, DatasetError

    with pytest.raises(ConfigError, match="nothing to read"):
        make_dataset(out, "train", ReadSpec(batch_size=2, modalities=()))
    with pytest.raises(DatasetError, match="reads feature set\\(s\\) ECG, which the dataset does not hold"):
        make_dataset(out, "train", ReadSpec(batch_size=2, modalities=(), features=("ECG",)))


# -- bad input: exit 2, the file named, nothing written -------------------------------------------


def _build(root, out, *extra):
    return cli_main(["build", "recola", str(root), str(out), "--modalities", "none", "--window", "1",
                     "--no-progress", "-q", *extra])


@pytest.fixture()
def small(tmp_path):
    root = tmp_path / "src"
    values = feature_corpus(root, seconds=1.0, recordings=("train_1", "dev_1"))
    return root, values


def _assert_refused(capsys, code, out, *fragments):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, err
    assert not out.exists()


def test_malformed_header_is_refused(small, tmp_path, capsys):
    root, _ = small
    path = root / "features_cues" / "dev_1.arff"
    path.write_text(path.read_text().replace("@attribute cue_a numeric", "@attribute cue_a"))
    _assert_refused(capsys, _build(root, tmp_path / "out", "--features", "cues"), tmp_path / "out", str(path))


def test_non_numeric_value_is_refused(small, tmp_path, capsys):
    root, _ = small
    path = root / "features_cues" / "train_1.arff"
    lines = path.read_text().splitlines()
    lines[-3] = lines[-3].rsplit(",", 1)[0] + ",abc"
    path.write_text("\n".join(lines) + "\n")
    _assert_refused(capsys, _build(root, tmp_path / "out", "--features", "cues"), tmp_path / "out",
                    str(path), "line")


def test_nan_is_refused_unless_fill_zero(small, tmp_path, capsys):
    root, values = small
    times, _, _, sets = values["train_1"]
    cues = sets["cues"].copy()
    cues[3:5, 1] = np.nan
    path = write_feature_arff(root / "features_cues" / "train_1.arff", "train_1", times, cues,
                              ["cue_a", "cue_v", "cue_n"])
    _assert_refused(capsys, _build(root, tmp_path / "out", "--features", "cues"), tmp_path / "out",
                    str(path), "frames 3-4", "--fill")
    assert _build(root, tmp_path / "out", "--features", "cues", "--fill", "zero") == 0
    arrays = dict(read_recordings(tmp_path / "out", "train", (), features=("cues",)))
    assert not arrays["train_1"]["features_cues"][3:5, 1].any()  # the NaN values, as the reader pads them
    np.testing.assert_allclose(arrays["train_1"]["features_cues"][5], cues[5], atol=1e-5)
    report = read_manifest(tmp_path / "out").shards["train_1"].report
    assert any("2 rows with NaN or inf set to zero" in line for line in report)


def test_frame_time_grid_off_the_labels_is_refused(small, tmp_path, capsys):
    root, values = small
    times, _, _, sets = values["dev_1"]
    path = write_feature_arff(root / "features_cues" / "dev_1.arff", "dev_1", times[: len(times) // 3],
                              sets["cues"][: len(times) // 3], ["cue_a", "cue_v", "cue_n"])
    _assert_refused(capsys, _build(root, tmp_path / "out", "--features", "cues", "--tolerance", "0.2"),
                    tmp_path / "out", str(path), "0.2 s tolerance")


def test_missing_feature_folder_lists_those_there_are(small, tmp_path, capsys):
    root, _ = small
    _assert_refused(capsys, _build(root, tmp_path / "out", "--features", "ECG"), tmp_path / "out",
                    str(root / "features_ECG"), "features_cues, features_other")
    _assert_refused(capsys, _build(root, tmp_path / "out", "--features", "audio_lld"), tmp_path / "out",
                    "--extract audio_lld")


def test_dimension_differing_between_recordings_is_refused(small, tmp_path, capsys):
    root, values = small
    times, _, _, sets = values["dev_1"]
    path = write_feature_arff(root / "features_other" / "dev_1.arff", "dev_1", times,
                              np.zeros((len(times), 5)))
    _assert_refused(capsys, _build(root, tmp_path / "out", "--features", "other"), tmp_path / "out",
                    str(path), "has 5", "every recording of feature set other must have the same")


def test_bad_dlib_model_is_refused(small, tmp_path, capsys):
    root, _ = small
    missing = tmp_path / "nothing.dat"
    _assert_refused(capsys, _build(root, tmp_path / "out", "--features", "cues", "--extract", "video_geometric",
                                   "--dlib-model", str(missing)), tmp_path / "out", str(missing))
    pytest.importorskip("dlib", reason="dlib is an optional extra (pip install 'emorec[landmarks]')")
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(b"not a model" * 100)
    _assert_refused(capsys, _build(root, tmp_path / "out", "--features", "cues", "--extract", "video_geometric",
                                   "--dlib-model", str(garbage)), tmp_path / "out", str(garbage),
                    "not a dlib shape predictor")


def test_a_rebuild_with_other_columns_rebuilds_every_shard(small, tmp_path):
    root, values = small
    out = tmp_path / "out"
    assert _build(root, out, "--features", "other") == 0
    first = read_manifest(out).shards["dev_1"].sha256
    for rid, (times, _, _, sets) in values.items():
        write_feature_arff(root / "features_other" / f"{rid}.arff", rid, times, sets["other"] + 1.0,
                           ["g0", "g1", "g2"])
    assert _build(root, out, "--features", "other") == 0
    manifest = read_manifest(out)
    assert manifest.feature_sets["other"].names == ["g0", "g1", "g2"] and manifest.shards["dev_1"].sha256 != first
    shutil.rmtree(out)

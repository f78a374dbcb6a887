"""The clip classification task (Pini et al., EmotiW 2017): configs, loss, metrics, folds, dataset handle, bad input.

Fast checks; the whole flow (training every phase, evaluation, export,
predict, k-fold, resume) is in ``tests/test_emotiw_flow.py``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml
from clip_samples import CLASSES, CentreDetector, sample_clips
from keras2_h5 import layer_arrays, write_keras_h5

from emorec.classification import (
    ClipLossConfig,
    class_weights,
    classification_metrics,
    classification_objective,
)
from emorec.cli import main as cli_main
from emorec.clips.build import ClipBuildOptions, build_clip_dataset
from emorec.clips.dataset import ClipDatasetHandle
from emorec.clips.folds import ClipSelection, kfold_partitions
from emorec.clips.manifest import CLIP_MANIFEST_NAME, ClipInfo, ClipManifest, ClipShardInfo
from emorec.config import config_path_for, resolve_config
from emorec.dataset import DatasetHandle, open_dataset
from emorec.errors import ConfigError, DatasetError
from emorec.models import c3d, get_model_spec
from emorec.models.emotiw import CONFIG_CLASSES
from emorec.tasks import get_task
from emorec.tasks.clip_classification import fusion_inputs, unit_counts

REPO = Path(__file__).resolve().parents[1]
MODELS = ("emotiw_frame", "emotiw_c3d", "emotiw_audio", "emotiw")


# -- configs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_yaml_model_section_equals_config_defaults_and_paper_optimizer(name):
    doc = yaml.safe_load(config_path_for(name).read_text())
    assert doc["model"] == CONFIG_CLASSES[name](name=name).to_dict()
    config = resolve_config(config_path_for(name))
    spec = get_model_spec(name)
    assert spec.task == "clip_classification" and spec.config_class is CONFIG_CLASSES[name]
    optimizer = config.optimizer
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.999, 1e-8)
    paper_rate = {"emotiw_frame": 1e-4, "emotiw_c3d": 1e-3, "emotiw_audio": 1e-3, "emotiw": 5e-4}
    assert optimizer.learning_rate == paper_rate[name]
    demo = resolve_config(config_path_for(name), demo=True)
    assert demo.training.checkpoints == "end"


def test_loss_section_and_bad_values_name_their_origin():
    assert resolve_config(config_path_for("emotiw")).loss.class_weights == "exponential"
    assert resolve_config(config_path_for("emotiw_frame")).loss == ClipLossConfig()
    with pytest.raises(ConfigError, match=r"--set loss.class_weights=inverse: loss.class_weights must be one of"):
        resolve_config(config_path_for("emotiw"), overrides=["loss.class_weights=inverse"])
    with pytest.raises(ConfigError, match=r"model.width must be in \(0, 1\], got 2.0"):
        resolve_config(config_path_for("emotiw_frame"), overrides=["model.width=2.0"])


# -- loss and metrics -----------------------------------------------------------------------------------


def test_class_weights_follow_the_documented_exponential():
    counts = np.array([133, 74, 81, 150, 144, 117, 74])  # AFEW Train, Table 1
    share = counts / counts.sum()
    raw = np.exp(1.0 * (7 * share - 1))
    expected = raw / (share * raw).sum()
    weights = class_weights(counts, "exponential", 1.0)
    np.testing.assert_allclose(weights, expected, rtol=1e-12)
    assert float((share * weights).sum()) == pytest.approx(1.0)
    assert weights.argmax() == 3 and weights[1] == weights[6]  # Happy up, the two 74s equal
    assert np.all(np.diff(class_weights(counts, "exponential", -1.0)[np.argsort(counts)]) <= 0)
    np.testing.assert_array_equal(class_weights(counts, "none"), np.ones(7))
    with pytest.raises(ValueError, match="at least one example"):
        class_weights([0, 0])


def test_objective_is_the_weighted_cross_entropy_of_eq_4():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([0, 1, 2, 3, 1, 1])
    lam = np.array([2.0, 0.5, 1.0, 1.5])
    batch = {"label": tf.constant(labels), "example_weight": tf.constant(lam[labels], tf.float32)}
    loss, terms = classification_objective(batch, {"emotion_class": tf.constant(probs, tf.float32)})
    ce = -np.log(probs[np.arange(6), labels])
    assert float(loss) == pytest.approx(float((lam[labels] * ce).sum() / 6), rel=1e-5)
    assert float(terms["cross_entropy"]) == pytest.approx(float(ce.mean()), rel=1e-5)
    assert float(terms["accuracy"]) == pytest.approx(float((probs.argmax(1) == labels).mean()))
    # Without weights it is eq. 3 (averaged); the reducer sees (weighted sum, sum, correct, count).
    seen = []
    plain, _ = classification_objective({"label": tf.constant(labels)}, {"emotion_class": tf.constant(probs)},
                                        reduce_fn=lambda s: seen.append(s.numpy()) or s)
    assert float(plain) == pytest.approx(float(ce.mean()), rel=1e-5) and seen[0][3] == 6


def test_metrics_confusion_recall_uar():
    gold = [0, 0, 0, 1, 2, 2, -1]
    probs = np.eye(3)[[0, 1, 0, 1, 2, 0, 2]]
    m = classification_metrics(gold, probs, ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [0, 1, 0], [1, 0, 1]] and m["count"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["recall"] == {"a": pytest.approx(2 / 3), "b": 1.0, "c": 0.5}
    assert m["uar"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)


def test_fusion_inputs_blank_what_a_clip_lacks():
    features = {"frame_features": np.ones((2, 3, 4), np.float32), "slice_features": np.ones((2, 2, 4), np.float32),
                "audio_features": np.ones((2, 5), np.float32), "face_found": np.array([[0, 0, 0], [0, 1, 0]]),
                "audio_mask": np.array([1.0, 0.0]), "label": np.array([0, 1]), "clip_id": np.array(["a", "b"])}
    out = fusion_inputs(features)
    assert out["frame_features"][0].sum() == 0 and out["slice_features"][0].sum() == 0  # no face at all
    assert out["frame_features"][1].sum() == 12 and out["audio_features"][1].sum() == 0  # no sound
    assert out["audio_features"][0].sum() == 5


# -- folds ----------------------------------------------------------------------------------------------


def _manifest(train, dev) -> ClipManifest:
    """A manifest of ``(clip_id, label, subject)`` lists (no shards on disk)."""
    clips, shards = {}, {}
    for partition, rows in (("train", train), ("dev", dev)):
        ids = []
        for cid, label, subject in rows:
            clips[cid] = ClipInfo(cid, partition, label, CLASSES[label], subject, f"{cid}.avi",
                                  f"{partition}/s.tfrecord", 30, 25.0, 30, True, 22050)
            ids.append(cid)
        shards[f"{partition}/s.tfrecord"] = ClipShardInfo(f"{partition}/s.tfrecord", partition, ids, 1, "x")
    return ClipManifest({"face_size": 80, "sample_rate": 22050}, list(CLASSES), shards, clips)


def test_kfold_is_subject_independent_and_covers_validation_once():
    dev = [(f"d{i}", i % 3, f"s{i % 5}") for i in range(23)]
    train = [(f"t{i}", i % 3, ("s1" if i < 2 else f"t{i % 4}")) for i in range(12)]
    folds = kfold_partitions(_manifest(train, dev), 5, seed=3)
    held = [f["dev"].clip_ids for f in folds]
    assert sorted(c for ids in held for c in ids) == sorted(c for c, _, _ in dev)
    subjects = {c: s for c, _, s in dev + train}
    for fold in folds:
        val_subjects = {subjects[c] for c in fold["dev"].clip_ids}
        train_subjects = {subjects[c] for c in fold["train"].clip_ids}
        assert not val_subjects & train_subjects
        assert fold["train"].partitions == ("train", "dev")
    # Subject s1 appears in a training clip too: that fold leaves those clips out of training.
    fold_of_s1 = next(f for f in folds if any(subjects[c] == "s1" for c in f["dev"].clip_ids))
    assert "t0" not in fold_of_s1["train"].clip_ids and "t5" in fold_of_s1["train"].clip_ids
    # Unknown subjects: each clip its own group, dealt by class so every fold gets each class.
    anonymous = kfold_partitions(_manifest(train, [(f"d{i}", i % 3, "") for i in range(15)]), 5)
    for fold in anonymous:
        labels = sorted(int(c[1:]) % 3 for c in fold["dev"].clip_ids)
        assert labels == [0, 1, 2]
    with pytest.raises(ConfigError, match="belong to 2 subjects, fewer than 3 folds"):
        kfold_partitions(_manifest(train, [(f"d{i}", 0, f"s{i % 2}") for i in range(6)]), 3)


# -- a built clip dataset ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_data(tmp_path_factory):
    """The sample clips (faceless, mute and short ones in train) built at 80 pixels with a stand-in detector."""
    root = tmp_path_factory.mktemp("emotiw_task")
    sources = sample_clips(root / "media")
    out = root / "clips"
    build_clip_dataset(sources, out, ClipBuildOptions(face_size=80, clips_per_shard=2), "test",
                       detector=CentreDetector(), progress=False)
    return out


def test_open_dataset_chooses_the_handle_by_manifest(clip_data, tmp_path):
    from dataset_factory import make_dataset_dir

    handle = open_dataset(clip_data)
    assert isinstance(handle, ClipDatasetHandle) and open_dataset(handle) is handle
    assert handle.classes == CLASSES and handle.face_size == 80 and handle.sample_rate == 22050
    assert handle.class_counts("train").tolist() == [2, 1, 1]
    summary = handle.summary()["partitions"]["train"]
    assert (summary["clips"], summary["clips_without_face"], summary["clips_without_audio"]) == (4, 1, 1)
    windowed, _ = make_dataset_dir(tmp_path)
    assert isinstance(open_dataset(windowed), DatasetHandle)
    with pytest.raises(DatasetError, match="no clip dataset manifest here|manifest.json"):
        open_dataset(tmp_path / "nothing")


def test_a_selection_reads_only_its_clips(clip_data):
    from emorec.clips.data import audio_dataset, frame_dataset

    handle = open_dataset(clip_data)
    view = handle.with_partitions({"train": ClipSelection("sel", ("train", "dev"), frozenset({"happy", "devclip"}))},
                                  "a view")
    assert [c.clip_id for c in view.clips("train")] == ["happy", "devclip"]
    ids = {c.decode() for b in audio_dataset(clip_data, view.selection("train"), batch_size=4) for c in
           b["clip_id"].numpy()}
    assert ids == {"happy", "devclip"}
    faces = sum(int(b["face"].shape[0]) for b in frame_dataset(clip_data, view.selection("train"), batch_size=64))
    assert faces == sum(c.frames for c in view.clips("train"))


def test_units_per_epoch_and_data_checks(clip_data, tmp_path):
    from dataset_factory import make_dataset_dir

    task = get_task("clip_classification")
    handle = open_dataset(clip_data)
    clips = handle.clips("train")
    config = resolve_config(config_path_for("emotiw_c3d"), overrides=["model.num_classes=3"])
    assert unit_counts(handle, config, "train") == sum(max(1, math.ceil(c.frames / 16)) for c in clips)
    frame = resolve_config(config_path_for("emotiw_frame"), overrides=["model.num_classes=3"])
    assert unit_counts(handle, frame, "train") == sum(c.faces_found for c in clips)
    audio = resolve_config(config_path_for("emotiw_audio"), overrides=["model.num_classes=3", "data.batch_size=2"])
    assert unit_counts(handle, audio, "train") == 3  # the mute clip is not trained on
    task.check_data(handle, get_model_spec("emotiw_audio"), audio)
    with pytest.raises(ConfigError, match=r"gives 3 examples for emotiw_audio, fewer than a batch of 128"):
        task.check_data(handle, get_model_spec("emotiw_audio"), audio.with_overrides(["data.batch_size=128"]))
    with pytest.raises(ConfigError, match=r"the dataset has 3 classes \(Angry, Happy, Surprise\) but "
                                          r"model.num_classes is 7"):
        task.check_data(handle, get_model_spec("emotiw_audio"), audio.with_overrides(["model.num_classes=7"]))
    windowed, _ = make_dataset_dir(tmp_path)
    with pytest.raises(DatasetError, match="needs a clip dataset"):
        task.check_data(open_dataset(windowed), get_model_spec("emotiw_audio"), audio)
    fusion = resolve_config(config_path_for("emotiw"), overrides=["model.num_classes=3"])
    with pytest.raises(ConfigError, match="trains on the features of trained branches"):
        task.check_data(handle, get_model_spec("emotiw"), fusion)


# -- bad input through the command line -----------------------------------------------------------------


def _run(argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(argv)
    return code, err.getvalue()


def test_clips_csv_with_an_unknown_partition_is_exit_2_and_writes_nothing(clip_data, tmp_path):
    csv_path = tmp_path / "clips.csv"
    video = next(Path(c.video) for c in open_dataset(clip_data).clips("train"))
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["clip", "partition", "subject", "video", "label"])
        writer.writerow(["a", "train", "s", str(video), "Happy"])
        writer.writerow(["b", "validation", "s", str(video), "Sad"])
    code, err = _run(["build", "clips", str(csv_path), str(tmp_path / "out"), "--no-progress"])
    assert code == 2 and err.startswith(f"error: {csv_path}") and "validation" in err
    assert not (tmp_path / "out").exists()


def test_afew_unknown_or_empty_class_folder_and_corrupt_clip_are_exit_2(clip_data, tmp_path):
    video = next(Path(c.video) for c in open_dataset(clip_data).clips("train"))
    root = tmp_path / "afew"
    (root / "Train_AFEW" / "Happy").mkdir(parents=True)
    (root / "Train_AFEW" / "Happy" / "001.avi").write_bytes(video.read_bytes())
    (root / "Train_AFEW" / "Bored").mkdir()
    code, err = _run(["build", "afew", str(root), str(tmp_path / "o1"), "--no-progress"])
    assert code == 2 and "error: " in err and "Bored" in err
    (root / "Train_AFEW" / "Bored").rmdir()
    (root / "Train_AFEW" / "Sad").mkdir()
    code, err = _run(["build", "afew", str(root), str(tmp_path / "o2"), "--no-progress"])
    assert code == 2 and "Sad" in err
    (root / "Train_AFEW" / "Sad").rmdir()
    (root / "Train_AFEW" / "Happy" / "002.avi").write_bytes(b"RIFF\0\0\0\0AVI LIST" + bytes(range(256)) * 4)
    code, err = _run(["build", "afew", str(root), str(tmp_path / "o3"), "--no-progress"])
    assert code == 2 and "002.avi" in err.splitlines()[0]
    assert not (tmp_path / "o3" / CLIP_MANIFEST_NAME).exists()
    (root / "Train_AFEW" / "Happy" / "002.avi").unlink()
    code, err = _run(["build", "afew", str(root), str(tmp_path / "o4"), "--no-progress", "--face-size", "64"])
    assert code == 0, err
    built = open_dataset(tmp_path / "o4")
    assert [(c.clip_id, c.label_name) for c in built.clips("train")] == [("train_001", "Happy")]
    assert built.face_size == 64 and built.classes[3] == "Happy"


def test_weight_file_of_another_architecture_names_the_layer_and_both_shapes(clip_data, tmp_path):
    other = c3d.build_c3d(input_size=32, width=0.25)  # twice as wide as the model that loads it
    path = tmp_path / "c3d_other.h5"
    write_keras_h5(path, layer_arrays(other), whole_model=False)
    argv = ["train", "--model", "emotiw_c3d", "--data", str(clip_data), "--out", str(tmp_path / "run"),
            "--no-progress", "--set", f"model.c3d_weights={path}", "--set", "model.input_size=32",
            "--set", "model.width=0.125", "--set", "model.head_padding=same", "--batch-size", "2"]
    code, err = _run(argv)
    assert code == 2
    assert err.startswith(f"error: {path}: layer 'conv1': kernel has shape (3, 3, 3, 3, 16) in the file but "
                          "(3, 3, 3, 3, 8) in the model")
    code, err = _run(argv[:8] + ["--set", f"model.c3d_weights={tmp_path / 'missing.h5'}"] + argv[10:])
    assert code == 2 and "missing.h5" in err


def test_flags_that_do_not_apply_are_refused(clip_data, tmp_path):
    code, err = _run(["train", "--model", "e2e_audio", "--data", str(clip_data), "--folds", "5"])
    assert code == 2 and "--folds apply to the clip models" in err
    code, err = _run(["train", "--model", "emotiw_audio", "--data", str(clip_data), "--branches", "a,b,c",
                      "--out", str(tmp_path / "r")])
    assert code == 2 and "--branches applies to the emotiw fusion only" in err
    code, err = _run(["train", "--model", "emotiw", "--data", str(clip_data), "--branches", "a,b",
                      "--out", str(tmp_path / "r")])
    assert code == 2 and "expected FRAME_RUN,C3D_RUN,AUDIO_RUN" in err
    code, err = _run(["train", "--model", "emotiw", "--data", str(clip_data), "--branches",
                      f"{tmp_path},{tmp_path},{tmp_path}", "--out", str(tmp_path / "r")])
    assert code == 2 and f"{tmp_path / 'config.yaml'}: not found" in err



# -- the export's clip predictor -------------------------------------------------------------------------


def test_clip_predictor_averages_found_faces_and_stretches_short_clips():
    import keras

    from emorec.clip_export import clip_predictor
    from emorec.models import build_model

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    frame = build_model("emotiw_frame", {"num_classes": 3, "input_size": 80, "width": 0.0625,
                                         "repeats": [1, 1, 1], "conv_padding": "same"})
    faces = rng.uniform(size=(5, 80, 80, 3)).astype(np.float32)
    found = np.array([1, 0, 1, 1, 0], np.float32)
    probs = frame({"face": faces}, training=False)["emotion_class"].numpy()
    predict = clip_predictor(frame, "frame")
    got = predict(tf.constant(faces), tf.constant(found), tf.zeros([0]), tf.constant(0.0)).numpy()
    np.testing.assert_allclose(got, probs[found > 0].mean(axis=0), atol=1e-6)
    none = predict(tf.constant(faces), tf.zeros([5]), tf.zeros([0]), tf.constant(0.0)).numpy()
    np.testing.assert_allclose(none, probs.mean(axis=0), atol=1e-6)  # no face at all: every frame

    clip = build_model("emotiw_c3d", {"num_classes": 3, "input_size": 32, "width": 0.0625,
                                      "head_padding": "same"})
    short = rng.uniform(size=(10, 32, 32, 3)).astype(np.float32)  # fewer than 16 frames
    stretched = short[[k * 10 // 16 for k in range(16)]][None]
    expected = clip({"clip": stretched}, training=False)["emotion_class"].numpy()[0]
    got = clip_predictor(clip, "c3d")(tf.constant(short), tf.ones([10]), tf.zeros([0]), tf.constant(1.0))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


def test_clip_protocol_file_equals_the_built_in_defaults_and_aggregations_differ():
    from emorec.clip_evaluate import ClipProtocol, load_clip_protocol, score_units

    assert load_clip_protocol() == ClipProtocol() and load_clip_protocol(REPO / "evaluate" / "emotiw2017.yaml")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) protocol.window"):
        load_clip_protocol({"window": 3})
    # Clip "a": two frames lean to class 0 a little, one strongly to class 1.
    predictions = {"probs": np.array([[0.6, 0.4], [0.6, 0.4], [0.0, 1.0], [0.9, 0.1]]),
                   "label": np.array([1, 1, 1, 0]), "clip_id": ["a", "a", "a", "b"],
                   "keep": np.array([True, True, True, True])}
    mean = score_units(predictions, ["x", "y"], "mean")
    vote = score_units(predictions, ["x", "y"], "vote")
    np.testing.assert_allclose(mean["clip_probs"][0], [0.4, 0.6])
    np.testing.assert_allclose(vote["clip_probs"][0], [2 / 3, 1 / 3])
    assert mean["clip"]["accuracy"] == 1.0 and vote["clip"]["accuracy"] == 0.5
    assert mean["unit"]["accuracy"] == 0.5

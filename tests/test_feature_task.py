"""The feature_regression task end to end on released feature sets: configure, train, early stopping, evaluate, export, fuse."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
from feature_samples import feature_corpus

from emorec.cli import main as cli_main
from emorec.config import load_run_config, resolve_config
from emorec.config.train_config import config_path_for
from emorec.data import read_recordings
from emorec.dataset import DatasetHandle
from emorec.errors import ConfigError, DatasetError
from emorec.evaluate import evaluate_run
from emorec.export import export_run
from emorec.fusion import fuse_runs
from emorec.models import get_model_spec
from emorec.rundir import FusionDir
from emorec.tasks import get_task
from emorec.training.engine import train

SMALL = ["data.window=4", "data.batch_size=4", "model.layers=[8]", "optimizer.learning_rate=0.01"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    feature_corpus(root, seconds=12.0)
    out = tmp_path_factory.mktemp("ds") / "ds"
    assert cli_main(["build", "recola", str(root), str(out), "--features", "cues,other", "--modalities", "none",
                     "--window", "4", "--no-progress", "-q"]) == 0
    return DatasetHandle.open(out)


def _config(*overrides):
    return resolve_config(config_path_for("feature_lstm"), overrides=[*SMALL, *overrides])


def test_configure_fills_the_feature_sets(dataset):
    task = get_task("feature_regression")
    spec = get_model_spec("feature_lstm")
    config = task.configure(_config(), dataset, spec)
    assert config.model.features == ("cues", "other") and config.model.feature_dims == (3, 3)
    assert task.configure(_config("model.features=[other]"), dataset, spec).model.feature_dims == (3,)
    with pytest.raises(DatasetError, match="reads feature set\\(s\\) ECG"):
        task.configure(_config("model.features=[ECG]"), dataset, spec)
    with pytest.raises(ConfigError, match="differ from the stored dimensions"):
        task.configure(_config("model.features=[cues]", "model.feature_dims=[4]"), dataset, spec)
    assert task.modalities(spec, config) == ()
    from emorec.tasks.feature_regression import landmarks_available

    expected = ("audio_lld", "video_geometric", "video_appearance") if landmarks_available() else (
        "audio_lld", "video_appearance")
    assert task.demo_dataset_options(_config()) == {"extract": expected, "modalities": ()}
    with pytest.raises(ConfigError, match="the demo corpus can compute"):
        task.demo_dataset_options(config)


def test_early_stopping_ends_the_run(dataset, tmp_path):
    # A learning rate too small to learn anything: the best epoch comes early, the run stops 2 epochs later.
    config = _config("optimizer.learning_rate=1e-12", "training.epochs=10", "training.early_stopping_patience=2",
                     "training.checkpoints=end")
    result = train(config, dataset, tmp_path / "run", progress=False)
    assert len(result.history) == result.best_epoch + 2 < 10
    scores = [row["dev_ccc_mean"] for row in result.history]
    assert max(scores[result.best_epoch:]) <= scores[result.best_epoch - 1]
    saved = load_run_config(tmp_path / "run")
    assert saved.model.features == ("cues", "other") and saved.model.feature_dims == (3, 3)


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    """Two short runs: arousal alone from `cues`, and both dimensions from both sets."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, extra in (("arousal", ["model.targets=[arousal]", "model.features=[cues]", "loss.name=mse_cov"]),
                        ("both", ["loss.name=mse"])):
        config = _config("training.epochs=12", "training.checkpoints=end", *extra)
        out[name] = train(config, dataset, base / name, progress=False)
    return out


def test_training_learns_and_evaluates_whole_recordings(dataset, runs):
    both = runs["both"]
    assert both.best_score > 0.6 and both.best_score > both.history[0]["dev_ccc_mean"] + 0.2, both.history
    arousal = runs["arousal"]
    assert "dev_ccc_valence" in arousal.history[-1] and arousal.best_score == max(
        row["dev_ccc_arousal"] for row in arousal.history)
    assert set(k for k in arousal.history[0] if k.startswith("train_ccc")) == {"train_ccc_arousal"}
    metrics = evaluate_run(both.run_dir, dataset, "dev", "tune", plots=False, progress=False)
    assert metrics["protocol"] == "avec2015" and metrics["eval_window"]["inference"] == "whole"
    assert [s["step"] for d in metrics["postprocess"]["params"]["dimensions"] for s in d["steps"]] == [
        "exponential_smoothing"] * 2
    best_epoch = both.history[both.best_epoch - 1]
    assert metrics["raw"]["arousal"]["ccc"] == pytest.approx(best_epoch["dev_ccc_arousal"], abs=1e-6)
    single = evaluate_run(arousal.run_dir, dataset, "dev", "off", plots=False, progress=False)
    assert single["raw"]["valence"]["ccc"] == 0.0  # the untrained column is a constant 0


def test_export_names_the_feature_sets(runs, dataset, tmp_path):
    info = export_run(runs["both"].run_dir, tmp_path / "export", data=dataset)
    assert info["inputs"] == ["features_cues", "features_other"] and info["modalities"] == []
    assert info["feature_sets"] == {"cues": 3, "other": 3} and info["feature_norm"] == "speaker"
    assert info["streaming"] is None and "no recurrent head" in info["streaming_unavailable"]


def test_fusion_weights_and_the_fused_predictor(runs, dataset, tmp_path):
    out = tmp_path / "fused"
    info = fuse_runs([runs["arousal"].run_dir, runs["both"].run_dir], dataset, out, progress=False)
    assert info["fit_recordings"] == ["dev_1"] and info["evaluated_recordings"] == ["dev_2"]
    assert info["runs"][0]["weights"][1] == 0.0  # the arousal-only run takes no part in valence
    assert set(info["metrics"]) >= {"best_single_run", "fusion_fit", "fusion_evaluated", "fusion_entire_dev_refit"}
    target = FusionDir(out)
    assert target.table.is_file() and json.loads(target.info.read_text())["split"] == "paper"
    model = keras.saving.load_model(target.fused_model, compile=False)
    arrays = dict(read_recordings(dataset, "dev", (), features=("cues", "other"), feature_norm="speaker"))
    got = model({k: v[None] for k, v in arrays["dev_2"].items() if k.startswith("features_")})["emotion"].numpy()[0]
    with open(target.prediction_csv("dev", "dev_2")) as handle:
        rows = list(csv.DictReader(handle))
    written = np.array([[float(r["arousal"]), float(r["valence"])] for r in rows])
    np.testing.assert_allclose(got, written, rtol=1e-4, atol=1e-5)
    # The fused export is an emorec export whose feature sets predict cannot make from media.
    from emorec.predict import media_frames, read_export_info

    exported = read_export_info(target.export)
    assert exported["feature_sets"] == {"cues": 3, "other": 3} and exported["modalities"] == []
    media = tmp_path / "new.wav"
    media.write_bytes(b"")
    with pytest.raises(ConfigError, match="reads feature sets"):
        media_frames(media, exported)
    with pytest.raises(ConfigError, match="at least two runs"):
        fuse_runs([runs["both"].run_dir], dataset, tmp_path / "one", progress=False)


def test_fuse_command(runs, dataset, tmp_path, capsys):
    code = cli_main(["fuse", str(runs["arousal"].run_dir), str(runs["both"].run_dir), "--data", str(dataset.path),
                     "--out", str(tmp_path / "f"), "--split", "whole", "--no-export", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "late fusion fitted and scored on the entire dev" in out
    assert json.loads((tmp_path / "f" / "fusion.json").read_text())["exported"] is None

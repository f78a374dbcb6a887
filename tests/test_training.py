"""The training engine on one CPU device: run directory, best model, resume, NaN stop, CLI config."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _tiny_model
import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from _tiny_model import NAME, tiny_config
from cli_run import train_result
from dataset_factory import make_dataset_dir
from read_spec import make_dataset

from emorec.cli import build_parser
from emorec.cli import main as cli_main
from emorec.errors import ConfigError, EmorecError
from emorec.tasks.frame_regression import validation_metrics
from emorec.training import TrainingDivergedError, train
from emorec.training.predictions import predict_windows

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_train_worker.py"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    # 3 training recordings -> 5 + 4 + 5 = 14 ten-frame windows -> 3 batches of 4 per epoch.
    root = tmp_path_factory.mktemp("train_data")
    path, _ = make_dataset_dir(root, recordings={"train": 3, "dev": 2}, frames=[45, 38, 50],
                               window_frames=10, modalities=("audio",))
    return path


def _weights(model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def test_run_directory_history_and_best_model(data_dir, tmp_path):
    steps = []
    result = train(tiny_config(epochs=3), data_dir, tmp_path / "run", progress=False, on_step=steps.append)
    run = tmp_path / "run"
    assert result.global_step == 9 and len(steps) == 9
    assert [s["global_step"] for s in steps] == list(range(1, 10))
    assert [s["step_in_epoch"] for s in steps] == [1, 2, 3] * 3

    # Regularisation enters the loss: at step 1 it is l2 * sum(w^2) of the initial Dense kernel.
    keras.utils.set_random_seed(tiny_config()["training"]["seed"])
    fresh = _tiny_model.build_tiny(tiny_config()["model"])
    kernel = fresh.get_weights()[0]
    assert steps[0]["terms"]["regularization"] == pytest.approx(1e-3 * np.sum(kernel**2), rel=1e-5)
    assert steps[0]["terms"]["loss"] == pytest.approx(
        steps[0]["terms"]["objective"] + steps[0]["terms"]["regularization"], rel=1e-6)

    history = json.loads((run / "history.json").read_text())
    assert history == result.history and [h["epoch"] for h in history] == [1, 2, 3]
    assert (run / "history.csv").read_text().count("\n") == 4
    for row in history:
        assert row["dev_ccc_mean"] == pytest.approx((row["dev_ccc_arousal"] + row["dev_ccc_valence"]) / 2)
    best = int(np.argmax([h["dev_ccc_mean"] for h in history])) + 1
    assert result.best_epoch == best and history[-1]["best_epoch"] == best
    assert result.best_dev_ccc == pytest.approx(history[best - 1]["dev_ccc_mean"])

    # best.keras is the best epoch's model: re-scoring it on dev reproduces that epoch's CCC.
    model = keras.models.load_model(result.best_model)
    dev = make_dataset(data_dir, "dev", batch_size=3, modalities=["audio"], window_frames=10)
    rescored = validation_metrics(predict_windows(model, dev))
    assert rescored["dev_ccc_mean"] == pytest.approx(result.best_dev_ccc, abs=1e-6)

    # One resume checkpoint (the newest), with the optimizer state; the best weights live in best.keras only.
    assert Path(result.latest_checkpoint).name == "ckpt-9"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest"]
    assert {p.name.split(".")[0] for p in (run / "checkpoints" / "latest").glob("ckpt-*")} == {"ckpt-9"}
    names = [name for name, _ in tf.train.list_variables(result.latest_checkpoint)]
    assert any(n.startswith("optimizer_variables/") for n in names)
    assert list((run / "tb").glob("events.out.tfevents.*"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["training"]["epochs"] == 3 and saved["run"]["num_replicas"] == 1
    assert not list(run.glob(".*.tmp")) and not list(run.glob(".best.*"))

    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config(epochs=3), data_dir, run, progress=False)


def test_resume_mid_epoch_reaches_the_uninterrupted_weights(data_dir, tmp_path):
    config = tiny_config(epochs=2)
    config["model"]["dropout"] = 0.3  # dropout draws must be restored too
    full = train(config, data_dir, tmp_path / "full", progress=False)
    stopped = dict(config, training={**config["training"], "max_steps": 4})  # epoch 2, batch 1
    # A run stopped by max_steps has finished; it keeps the optimizer state by default.
    first = train(stopped, data_dir, tmp_path / "resumed", progress=False)
    assert first.global_step == 4
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(_weights(first.model), _weights(full.model)))
    resumed = train(config, data_dir, tmp_path / "resumed", progress=False, resume=True)
    assert resumed.global_step == 6
    for a, b in zip(_weights(resumed.model), _weights(full.model)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(resumed.history, full.history):
        assert a["dev_ccc_mean"] == b["dev_ccc_mean"]


def test_checkpoints_at_end_write_once_and_keep_the_best_epoch(data_dir, tmp_path):
    # `end`: nothing is written until training ends, then latest (without Adam's moments when
    # keep_optimizer_state is false) and best.keras holding the best epoch's weights, not the last.
    saves = []
    config = tiny_config(epochs=3, checkpoints="end", keep_optimizer_state=False)
    config["optimizer"]["learning_rate"] = 0.05  # big steps: the epochs' dev scores differ

    def on_step(info):
        saves.append(sorted(p.name for p in (tmp_path / "run").glob("checkpoints/latest/*")))
        saves[-1] += [p.name for p in (tmp_path / "run").glob("best.keras")]

    result = train(config, data_dir, tmp_path / "run", progress=False, on_step=on_step)
    assert saves == [[]] * 9
    assert result.best_epoch < 3  # best.keras comes from the copy, not the final weights
    names = [name for name, _ in tf.train.list_variables(result.latest_checkpoint)]
    assert any(n.startswith("model_variables/") for n in names)
    assert not any(n.startswith("optimizer_variables/") for n in names)
    dev = make_dataset(data_dir, "dev", batch_size=3, modalities=["audio"], window_frames=10)
    rescored = validation_metrics(predict_windows(keras.models.load_model(result.best_model), dev))
    assert rescored["dev_ccc_mean"] == pytest.approx(result.best_score, abs=1e-6)
    final = validation_metrics(predict_windows(result.model, dev))
    assert final["dev_ccc_mean"] == pytest.approx(result.history[-1]["dev_ccc_mean"], abs=1e-6)
    # Continuing the finished run works from its weights, with fresh optimizer moments (not exact).
    more = train(dict(config, training={**config["training"], "epochs": 4}), data_dir, tmp_path / "run",
                 progress=False, resume=True)
    assert more.global_step == 12 and [h["epoch"] for h in more.history] == [1, 2, 3, 4]


def test_small_training_partition_says_how_many_windows(data_dir, tmp_path):
    with pytest.raises(EmorecError, match=r"holds 14 training windows of 10 frames.*--batch-size 14"):
        train(dict(tiny_config(), data={**tiny_config()["data"], "batch_size": 32}), data_dir,
              tmp_path / "run", progress=False)


def test_epoch_data_is_a_function_of_seed_and_epoch(data_dir):
    # The resume logic rebuilds epoch e's dataset from (seed, epoch) and skips: it must repeat exactly.
    def first_batch(seed, epoch):
        ds = make_dataset(data_dir, "train", batch_size=4, modalities=["audio"], training=True,
                          window_frames=10, seed=seed, epoch=epoch)
        batch = next(iter(ds))
        return batch["recording_id"].numpy().tolist(), batch["start_frame"].numpy().tolist()

    assert first_batch(3, 1) == first_batch(3, 1)
    assert len({str(first_batch(s, e)) for s in range(3) for e in range(3)}) > 5


def test_predict_windows_stitches_overlapping_windows(tmp_path):
    # Frame-wise model, windows of 10 frames every 4: each frame's prediction must equal the
    # model applied to that frame alone, and the gold track must be the recording's labels.
    data, truth = make_dataset_dir(tmp_path, recordings={"dev": 2}, frames=[23, 17], window_frames=10,
                                   hop_frames=4, modalities=("audio",))
    audio = keras.Input((None, 640), name="audio")
    model = keras.Model({"audio": audio}, {"emotion": keras.layers.Dense(2)(audio)})
    per_recording = predict_windows(model, make_dataset(data, "dev", batch_size=3, window_frames=10))
    assert sorted(per_recording) == ["dev_1", "dev_2"]
    w, b = model.get_weights()
    for rid, (gold, pred) in per_recording.items():
        np.testing.assert_allclose(gold, truth[rid]["labels"], rtol=1e-6)
        np.testing.assert_allclose(pred, truth[rid]["audio"] @ w + b, rtol=1e-4, atol=1e-5)


def _write_config(tmp_path, **training) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(**training)))
    return path


def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoint(data_dir, tmp_path, capsys):
    # lr 1e38: Adam moves every weight by ~1e38 at step 1, so step 2's outputs overflow.
    run = tmp_path / "run"
    argv = ["--model", NAME, "--config", str(_write_config(tmp_path)), "--data", str(data_dir),
            "--out", str(run), "--no-progress", "--set", "optimizer.learning_rate=1e38",
            "--set", "training.checkpoint_every=1"]
    assert cli_main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "non-finite loss at step 2 (epoch 1, batch 2)" in err
    assert "checkpoints/latest/ckpt-1" in err
    assert tf.train.latest_checkpoint(str(run / "checkpoints" / "latest")).endswith("ckpt-1")
    values = [tf.train.load_variable(str(run / "checkpoints" / "latest" / "ckpt-1"), name)
              for name, _ in tf.train.list_variables(str(run / "checkpoints" / "latest" / "ckpt-1"))
              if name.startswith("model_variables")]
    assert values and all(np.all(np.isfinite(v)) for v in values)
    with pytest.raises(TrainingDivergedError, match="step 2"):
        config = tiny_config(checkpoint_every=1)
        config["optimizer"]["learning_rate"] = 1e38
        train(config, data_dir, tmp_path / "api", progress=False)


def test_cli_flags_override_and_config_is_saved(data_dir, tmp_path):
    run = tmp_path / "run"
    result = train_result(["--model", NAME, "--config", str(_write_config(tmp_path)), "--data", str(data_dir),
                           "--out", str(run), "--steps", "4", "--batch-size", "2", "--seed", "7",
                           "--set", "optimizer.learning_rate=3e-3", "--no-progress"])
    assert result.global_step == 4
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["training"]["max_steps"] == 4 and saved["training"]["epochs"] is None
    assert saved["data"]["batch_size"] == 2 and saved["training"]["seed"] == 7
    assert saved["optimizer"]["learning_rate"] == pytest.approx(3e-3)
    assert saved["run"]["demo"] is False
    with pytest.raises(SystemExit):
        build_parser("train").parse_args(["--model", NAME, "--epochs", "2", "--steps", "3"])
    with pytest.raises(ConfigError, match="model.name"):
        train_result(["--model", "e2e_audio", "--config", str(_write_config(tmp_path)), "--data", str(data_dir)])
    # A bad --set value is blamed on the flag, not on the config file.
    with pytest.raises(ConfigError, match=r"^--set data.batch_size=abc: data.batch_size must be a positive"):
        train_result(["--model", NAME, "--config", str(_write_config(tmp_path)), "--data", str(data_dir),
                      "--out", str(tmp_path / "bad"), "--set", "data.batch_size=abc"])


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_weights(data_dir, tmp_path):
    config = _write_config(tmp_path, epochs=3, checkpoint_every=2)
    base = [sys.executable, str(WORKER)]
    args = ["--", "--model", NAME, "--config", str(config), "--data", str(data_dir), "--no-progress",
            "--set", "model.dropout=0.3"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    reference = subprocess.Popen(base + ["--dump", str(tmp_path / "ref.npz")] + args
                                 + ["--out", str(tmp_path / "ref")], env=env, stderr=subprocess.PIPE)
    run = tmp_path / "killed"
    victim = subprocess.Popen(base + ["--delay", "1.0"] + args + ["--out", str(run)], env=env,
                              stderr=subprocess.DEVNULL)
    marker = run / "checkpoints" / "latest" / "checkpoint"
    deadline = time.time() + 300
    while not marker.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists() and victim.poll() is None, "the run ended before its first checkpoint"
    time.sleep(1.5)  # a step or two past the checkpoint
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()[-2000:]
    resumed = subprocess.run(base + ["--dump", str(tmp_path / "resumed.npz")] + args
                             + ["--out", str(run), "--resume"], env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    ref, res = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "resumed.npz")
    # The resumed process trained only the steps after the checkpoint it restored.
    assert 0 < len(res["losses"]) < len(ref["losses"]) == 9
    np.testing.assert_array_equal(res["losses"], ref["losses"][-len(res["losses"]):])
    weights = [k for k in ref.files if k.startswith("w")]
    for key in weights:
        np.testing.assert_array_equal(res[key], ref[key])
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]


class _FakeModel:
    def __init__(self):
        self.weights_now = [np.zeros(2)]

    def get_weights(self):
        return [w.copy() for w in self.weights_now]

    def set_weights(self, weights):
        self.weights_now = [w.copy() for w in weights]


def test_checkpointer_end_saves_the_best_epoch_whether_or_not_it_is_the_last():
    from types import SimpleNamespace

    from emorec.training.callbacks import Checkpointer

    for improved, best_value in (([True, False, True], 3.0), ([True, True, False], 2.0)):
        saved = []
        model = _FakeModel()
        trainer = SimpleNamespace(
            model=model, state=SimpleNamespace(global_step=SimpleNamespace(numpy=lambda: 30)),
            checkpoints=SimpleNamespace(save_latest=lambda step, optimizer_state: None,
                                        save_best_model=lambda saved=saved, model=model: saved.append(model.get_weights()[0][0])))
        callback = Checkpointer("end", None, keep_optimizer_state=False)
        for epoch, better in enumerate(improved):
            callback.on_epoch_begin(trainer, epoch, 0)
            model.weights_now = [np.full(2, epoch + 1.0)]  # the epoch's training
            callback.on_epoch_end(trainer, epoch, {"global_step": 10 * (epoch + 1)}, better)
        callback.on_train_end(trainer, finished=True)
        assert saved == [best_value]
        assert model.get_weights()[0][0] == 3.0  # the final weights stay in the model

"""The clip task end to end: the main job (demo flow), --branches, evaluation, export, predict, resume, k-fold.

Two corpora, each built once:

- the main job (``emorec train --model emotiw`` without --data) on a tiny demo
  clip corpus (``$EMOREC_DEMO_CLIP_SPEC``: 3 classes, 2 training and 1
  validation clip each, 2 unlabelled test clips; real MTCNN) in a fresh cache,
  with one or two epochs per phase;
- the sample clips of ``tests/clip_samples.py`` (a faceless, a mute and a short
  clip among them) plus a second validation subject, built with the stand-in
  detector, for the audio branch's resume, k-fold and faceless/mute checks.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from clip_samples import CLASSES, CentreDetector, sample_clips
from log_capture import capture_logs

from emorec.cli import main as cli_main
from emorec.clips.build import ClipBuildOptions, build_clip_dataset
from emorec.clips.source import ClipSource

pytestmark = pytest.mark.slow

TINY_SPEC = {"classes": list(CLASSES), "train_per_class": 2, "val_per_class": 1, "test_clips": 2,
             "train_subjects": 2, "val_subjects": 1, "test_subjects": 1, "min_seconds": 0.8, "max_seconds": 1.0,
             "width": 128, "height": 96}
TINY_PHASES = ["training.epochs=2", "data.batch_size=2", "frame.training.epochs=1", "frame.data.batch_size=8",
               "c3d.training.epochs=1", "c3d.data.batch_size=4", "audio.training.epochs=2",
               "audio.data.batch_size=2"]


@contextlib.contextmanager
def _environ(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """``emorec train --model emotiw`` without --data; returns (run_dir, stdout, demo_summary.json)."""
    root = tmp_path_factory.mktemp("emotiw_main_job")
    run_dir = root / "run"
    argv = ["train", "--model", "emotiw", "--out", run_dir, "--no-progress"]
    for setting in TINY_PHASES:
        argv += ["--set", setting]
    with _environ(EMOREC_CACHE=str(root / "cache"), EMOREC_DEMO_CLIP_SPEC=json.dumps(TINY_SPEC)):
        code, stdout, stderr = _cli(argv)
    assert code == 0, stderr[-3000:]
    return run_dir, stdout, json.loads((run_dir / "demo_summary.json").read_text())


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_main_job_trains_every_phase_and_writes_every_output(main_job):
    run_dir, stdout, summary = main_job
    for branch in ("frame", "c3d", "audio"):
        assert (run_dir / branch / "best.keras").is_file() and (run_dir / branch / "config.yaml").is_file()
        assert (run_dir / "eval" / "dev" / branch / "metrics.json").is_file()
    assert json.loads((run_dir / "branches.json").read_text()) == {"frame": "frame", "c3d": "c3d", "audio": "audio"}
    assert sorted(p.name.split("-")[0] for p in (run_dir / "features").glob("*.npz")) == ["dev", "train"]
    for name in ("best.keras", "history.json", "learning_curves.png", "eval/dev/confusion_matrix.png",
                 "eval/dev/confusion_matrix.csv", "eval/dev/clip_predictions.csv", "eval/dev/predicted_labels.txt",
                 "eval/dev/frame/unit_confusion_matrix.csv", "export/export.json", "export/model.keras",
                 "export/saved_model/saved_model.pb"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "eval/dev/confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run_dir / "eval/dev/metrics.json").read_text())
    rows = [r["row"] for r in metrics["table2"]]
    assert rows == ["CNN branch (single frame)", "CNN branch (average)", "C3D branch (single slice)",
                    "C3D branch (average)", "Audio branch (1 second)", "Multimodal fusion (whole video)"]
    assert metrics["num_clips"] == 3 and metrics["clip"]["count"] == 3
    confusion = np.array(metrics["clip"]["confusion"])
    assert confusion.sum(axis=1).tolist() == [1, 1, 1]
    assert metrics["clip"]["accuracy"] == pytest.approx(np.trace(confusion) / 3)
    csv_rows = _rows(run_dir / "eval/dev/confusion_matrix.csv")
    assert [r["true\\predicted"] for r in csv_rows] == list(CLASSES)
    assert [[int(r[c]) for c in CLASSES] for r in csv_rows] == confusion.tolist()
    assert summary["dev"]["Multimodal fusion (whole video)"] == metrics["clip"]["accuracy"]
    assert set(summary["timings_s"]) >= {"build", "train", "evaluate", "export", "total"}
    assert "Multimodal fusion (whole video)" in stdout and "unweighted average recall" in stdout
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["num_classes"] == 3 and config["run"]["phase"] == "fusion"
    frame = yaml.safe_load((run_dir / "frame" / "config.yaml").read_text())
    assert frame["model"]["input_size"] == 80 and frame["training"]["epochs"] == 1  # demo section + --set


def test_cached_features_are_the_branches_outputs(main_job):
    from emorec.clip_features import BranchModels, BranchRuns, compute_clip_features
    from emorec.config import load_run_config
    from emorec.dataset import open_dataset

    run_dir, _, summary = main_job
    config = load_run_config(run_dir)
    data = open_dataset(summary["data_dir"])
    stored = np.load(next((run_dir / "features").glob("dev-*.npz")))
    fresh = compute_clip_features(data, "dev", BranchModels(BranchRuns.load(run_dir)), config.model.frames,
                                  config.model.slices)
    assert stored["frame_features"].shape == (3, 48, 256) and stored["slice_features"].shape == (3, 16, 256)
    for key in ("frame_features", "slice_features", "audio_features"):
        np.testing.assert_allclose(stored[key], fresh[key], atol=1e-5)
    assert stored["clip_id"].tolist() == fresh["clip_id"].tolist()


def test_predict_a_clip_as_evaluated_also_from_mp4(main_job, tmp_path):
    from emorec.media.audio import read_audio
    from emorec.media.video import iter_video_frames
    from emorec.media.write import write_mp4

    run_dir, _, summary = main_job
    evaluated = _rows(run_dir / "eval/dev/clip_predictions.csv")[0]
    media = Path(summary["data_dir"]).parent / "media"
    video = next(media.rglob(f"Val_AFEW/*/{evaluated['video']}.avi"))
    out = tmp_path / "clip.csv"
    code, stdout, stderr = _cli(["predict", run_dir / "export", video, "--out", out, "--no-progress"])
    assert code == 0, stderr
    predicted = {r["class"]: float(r["probability"]) for r in _rows(out)}
    for name in CLASSES:
        assert predicted[name] == pytest.approx(float(evaluated[name]), abs=1e-4)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["class"] == evaluated["predicted"] and f": {record['class']} (probability" in stdout
    assert record["faces_found"] == record["frames"] > 0 and record["has_audio"]
    # The same clip as H.264 + AAC in an mp4: a probability per class that sums to 1.
    frames = [frame for _, frame in iter_video_frames(video)]
    mp4 = tmp_path / "clip.mp4"
    write_mp4(mp4, frames, fps=25, audio=read_audio(video, 44_100), audio_rate=44_100)
    code, stdout, stderr = _cli(["predict", run_dir / "export", mp4, "--no-progress"])
    assert code == 0, stderr
    default = Path("clip_emotion.json")
    try:
        record = json.loads(default.read_text())
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert record["frames"] == len(frames)
    finally:
        default.unlink(missing_ok=True)
        default.with_suffix(".csv").unlink(missing_ok=True)
    code, _, stderr = _cli(["predict", run_dir / "export", tmp_path / "none.avi", "--no-progress"])
    assert code == 2 and "none.avi: no such file" in stderr


def test_evaluate_command_on_a_branch_and_on_the_unlabelled_test_partition(main_job, tmp_path):
    run_dir, _, summary = main_job
    data = summary["data_dir"]
    code, stdout, stderr = _cli(["evaluate", run_dir / "frame", "--data", data, "--partition", "dev",
                                 "--out", tmp_path / "frame"])
    assert code == 0, stderr
    assert "CNN branch (single frame)" in stdout and "CNN branch (average)" in stdout
    assert (tmp_path / "frame" / "unit_confusion_matrix.png").is_file()
    code, stdout, stderr = _cli(["evaluate", run_dir, "--data", data, "--partition", "test", "--out", tmp_path / "t"])
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["labelled"] is False and metrics["clip"] is None and metrics["num_clips"] == 2
    lines = (tmp_path / "t" / "predicted_labels.txt").read_text().split("\n")[:-1]
    assert len(lines) == 2 and all(line.split()[1] in CLASSES for line in lines)
    code, _, stderr = _cli(["evaluate", run_dir, "--data", data, "--partition", "dev", "--postprocess", "tune"])
    assert code == 2 and "apply to the frame regression models" in stderr


def test_branches_flag_trains_the_fusion_on_given_runs(main_job, tmp_path):
    run_dir, _, summary = main_job
    fusion = tmp_path / "fusion"
    branches = ",".join(str(run_dir / b) for b in ("frame", "c3d", "audio"))
    with capture_logs("emorec") as logs:
        code, stdout, stderr = _cli(["train", "--model", "emotiw", "--data", summary["data_dir"], "--branches",
                                     branches, "--out", fusion, "--no-progress", "--epochs", "1",
                                     "--batch-size", "2", "--set", "model.slices=8"])
    assert code == 0, stderr
    assert "best dev_accuracy" in stdout and not (fusion / "frame").exists()
    assert json.loads((fusion / "branches.json").read_text())["c3d"] == str((run_dir / "c3d").resolve())
    assert any(m.startswith("phase 2: the fusion") for m in logs)
    assert not any(m.startswith("phase 1") for m in logs)
    code, stdout, stderr = _cli(["export", fusion, tmp_path / "export"])
    assert code == 0, stderr
    info = json.loads((tmp_path / "export" / "export.json").read_text())
    assert info["branch"] == "fusion" and info["classes"] == list(CLASSES) and info["face_size"] == 80


# -- the sample clips: audio branch resume, k-fold, faceless and mute clips -------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("emotiw_samples")
    sources = sample_clips(root / "media")
    happy = next(s for s in sources if s.clip_id == "happy")
    copy = root / "media" / "devclip2.avi"
    shutil.copy(happy.video, copy)
    sources.append(ClipSource("devclip2", "dev", copy, CLASSES, CLASSES.index("Happy"), "subj_dev2"))
    out = root / "clips"
    build_clip_dataset(sources, out, ClipBuildOptions(face_size=80, clips_per_shard=2), "test",
                       detector=CentreDetector(), progress=False)
    return out


def _audio_config(**training):
    return {"model": {"name": "emotiw_audio", "soundnet_weights": None, "num_classes": 3, "lstm_units": 8,
                      "conv_filters": 16, "bn_momentum": 0.5, "lstm_keep_prob": 0.7},
            "data": {"batch_size": 1}, "optimizer": {"learning_rate": 1e-3},
            "training": {"epochs": 2, "seed": 4, **training}}


def test_audio_branch_resumes_exactly_and_counts_faceless_and_mute_clips(samples, tmp_path):
    from emorec.clip_evaluate import evaluate_clip_run
    from emorec.training.engine import train

    full = train(_audio_config(), samples, tmp_path / "full", progress=False)
    assert full.global_step == 6  # 3 clips with sound per epoch, batch 1
    first = train(_audio_config(max_steps=4), samples, tmp_path / "resumed", progress=False)
    assert first.global_step == 4
    resumed = train(_audio_config(), samples, tmp_path / "resumed", progress=False, resume=True)
    assert resumed.global_step == 6
    for a, b in zip(resumed.model.get_weights(), full.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    result = evaluate_clip_run(tmp_path / "full", samples, "train", plots=False)
    assert (result["clips_without_face"], result["clips_without_audio"]) == (1, 1)
    assert result["num_clips"] == 4 and len(result["table2"]) == 1


def test_kfold_trains_each_fold_and_reports_mean_and_sd(samples, tmp_path):
    config = tmp_path / "audio.yaml"
    config.write_text(json.dumps(_audio_config(epochs=1)))
    code, stdout, stderr = _cli(["train", "--model", "emotiw_audio", "--config", config, "--data", samples,
                                 "--folds", "2", "--out", tmp_path / "kfold", "--no-progress"])
    assert code == 0, stderr
    summary = json.loads((tmp_path / "kfold" / "folds.json").read_text())
    assert summary["k"] == 2 and [r["fold"] for r in summary["folds"]] == [1, 2]
    assert sorted(s for r in summary["folds"] for s in r["dev_subjects"]) == ["subj_dev", "subj_dev2"]
    assert all(r["dev_clips"] == 1 and r["train_clips"] == 5 for r in summary["folds"])
    values = [r["dev_accuracy"] for r in summary["folds"]]
    assert summary["dev_accuracy"]["mean"] == pytest.approx(np.mean(values))
    assert summary["dev_accuracy"]["sd"] == pytest.approx(np.std(values, ddof=1))
    assert (tmp_path / "kfold" / "fold2" / "best.keras").is_file() and "mean ± sd" in stdout
    saved = yaml.safe_load((tmp_path / "kfold" / "fold1" / "config.yaml").read_text())
    assert saved["run"]["fold"] == "fold 1 of 2"


def test_mirrored_over_two_devices_trains_as_one_device(samples, tmp_path):
    """Batch norms synchronise across replicas and the loss is the global batch's: two replicas = one device."""
    import subprocess
    import sys

    worker = Path(__file__).resolve().parent / "_train_worker.py"
    config = tmp_path / "emotiw_audio.yaml"
    doc = _audio_config(epochs=2)
    doc["data"]["batch_size"] = 2
    doc["model"].update(input_keep_prob=1.0, lstm_keep_prob=1.0, cell_keep_prob=1.0)
    config.write_text(json.dumps(doc))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    procs = {
        strategy: subprocess.Popen(
            [sys.executable, str(worker), "--cpus", "2", "--dump", str(tmp_path / f"{strategy}.npz"), "--",
             "--model", "emotiw_audio", "--config", str(config), "--data", str(samples), "--no-progress",
             "--strategy", strategy, "--out", str(tmp_path / strategy)], env=env, stderr=subprocess.PIPE)
        for strategy in ("one", "mirrored")
    }
    for strategy, proc in procs.items():
        assert proc.wait(timeout=600) == 0, f"{strategy}: {proc.stderr.read().decode()[-2000:]}"
    one, mirrored = np.load(tmp_path / "one.npz"), np.load(tmp_path / "mirrored.npz")
    assert len(one["losses"]) == 2
    np.testing.assert_allclose(mirrored["losses"], one["losses"], rtol=1e-5)
    # Weights agree to float rounding; the biases that a batch norm follows get only rounding noise as
    # gradient, which Adam scales up to learning-rate-sized steps, hence the absolute tolerance.
    for key in (k for k in one.files if k.startswith("w")):
        np.testing.assert_allclose(mirrored[key], one[key], rtol=1e-5, atol=1e-4)

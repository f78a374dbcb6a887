"""The main job, ``python -m emorec.train --model ae_lstm`` without --data: demo build → train → evaluate → export → pictures.

One run of the whole flow (module fixture) on a tiny demo corpus
(``$EMOREC_DEMO_SPEC``: one train and one dev recording of 4 s) in a fresh
cache (``$EMOREC_CACHE``), with a 2-step schedule and a narrow ae_lstm
(``--set model.face_latent=...``) so it runs in well under a minute of
training; the checks read what it wrote.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_run import train_result
from log_capture import capture_logs

from emorec.cli import build_parser
from emorec.cli import main as cli_main
from emorec.schema import FRAME_PERIOD

pytestmark = pytest.mark.slow

SECONDS = 4.0
TINY_SPEC = {"seconds": SECONDS, "subjects": [["train", 1], ["dev", 1]]}
TINY_MODEL = ["model.face_latent=32", "model.lstm_units=16", "model.audio_latent=64"]
SCHEDULE = ["training.epochs=1", "training.steps_per_epoch=2", "data.batch_size=4"]


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


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """Run the main job once through the command; returns (run_dir, cache_dir, stdout, demo_summary.json)."""
    root = tmp_path_factory.mktemp("main_job")
    run_dir, cache = root / "run", root / "cache"
    argv = ["train", "--model", "ae_lstm", "--out", str(run_dir), "--no-progress"]
    for setting in TINY_MODEL + SCHEDULE:
        argv += ["--set", setting]
    stdout = io.StringIO()
    with _environ(EMOREC_CACHE=str(cache), EMOREC_DEMO_SPEC=json.dumps(TINY_SPEC)):
        with contextlib.redirect_stdout(stdout):
            assert cli_main(argv) == 0
    return run_dir, cache, stdout.getvalue(), json.loads((run_dir / "demo_summary.json").read_text())


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_run_directory_holds_every_output(main_job):
    run_dir, cache, _, summary = main_job
    assert summary["global_step"] == 2 and summary["best_epoch"] == 1
    for name in ("config.yaml", "history.json", "best.keras", "postprocess.json", "demo_summary.json",
                 "eval/dev/metrics.json", "eval/dev/predictions/dev_1.csv",
                 "eval/dev/postprocessed/dev_1.csv", "eval/dev/plots/dev_1.png",
                 "export/export.json", "export/model.keras", "export/saved_model/saved_model.pb",
                 "learning_curves.png", "reconstructions.png"):
        assert (run_dir / name).is_file(), name
    # The demo dataset was built into the cache given by $EMOREC_CACHE, train and dev only.
    from emorec.manifest import read_manifest

    data_dirs = [p for p in (cache / "demo").iterdir() if (p / "manifest.json").is_file()]
    assert len(data_dirs) == 1 and data_dirs[0].name.startswith("0.2s-")
    manifest = read_manifest(data_dirs[0])
    assert sorted(manifest.shards) == ["dev_1", "train_1"]
    assert manifest.window_frames == 5
    assert sum(s.frames for s in manifest.shards.values()) == 2 * round(SECONDS / FRAME_PERIOD)
    summary = json.loads((run_dir / "demo_summary.json").read_text())
    assert set(summary["timings_s"]) == {"build", "train", "evaluate", "export", "pictures", "total"}
    assert Path(summary["data_dir"]) == data_dirs[0]


def test_metrics_equal_numpy_metrics_on_the_prediction_csvs(main_job):
    from emorec.data import read_recordings
    from emorec.metrics import evaluate_recordings

    run_dir, _, _, _ = main_job
    metrics = json.loads((run_dir / "eval/dev/metrics.json").read_text())
    data_dir = Path(json.loads((run_dir / "demo_summary.json").read_text())["data_dir"])
    gold = dict(read_recordings(data_dir, "dev", modalities=["audio"]))
    for kind, folder in (("raw", "predictions"), ("postprocessed", "postprocessed")):
        frame = pd.read_csv(run_dir / "eval/dev" / folder / "dev_1.csv")
        assert len(frame) == round(SECONDS / FRAME_PERIOD)
        # `end` alignment: frame i's prediction refers to time 0.04 (i + 1).
        np.testing.assert_allclose(frame["time"], (np.arange(len(frame)) + 1) * FRAME_PERIOD, atol=1e-6)
        labels = frame[["gold_arousal", "gold_valence"]].to_numpy()
        np.testing.assert_allclose(labels, gold["dev_1"]["labels"], atol=1e-6)
        expected = evaluate_recordings({"dev_1": (labels, frame[["arousal", "valence"]].to_numpy())})
        for name in ("arousal", "valence"):
            for key in ("ccc", "rmse", "pearson"):
                assert metrics[kind][name][key] == pytest.approx(expected[name][key], rel=1e-5, abs=1e-7)
        for key in ("E_a", "E_v", "E_av"):
            assert metrics[kind][key] == pytest.approx(expected[key], rel=1e-5)


def test_summary_names_the_outputs_and_the_dev_ccc_and_rmse(main_job):
    run_dir, _, stdout, _ = main_job
    raw = json.loads((run_dir / "eval/dev/metrics.json").read_text())["raw"]
    assert str(run_dir) in stdout
    for path in ("best.keras", "export", "metrics.json", "learning_curves.png", "reconstructions.png"):
        assert path in stdout
    assert f"CCC arousal {raw['arousal']['ccc']:.3f}" in stdout
    assert f"CCC valence {raw['valence']['ccc']:.3f}" in stdout
    for key in ("E_a", "E_v", "E_av"):
        assert f"{key} {raw[key]:.3f}" in stdout


def test_pictures_are_pngs_of_the_expected_size(main_job):
    from emorec import pictures

    run_dir, _, _, _ = main_job
    assert _png_size(run_dir / "learning_curves.png") == pictures.learning_curves_size()
    assert _png_size(run_dir / "reconstructions.png") == pictures.reconstruction_figure_size(
        pictures.DEFAULT_NUM_FACES
    )
    steps = pictures.read_step_scalars(run_dir)
    np.testing.assert_array_equal(steps["loss"][0], [1, 2])
    history = json.loads((run_dir / "history.json").read_text())
    assert np.mean(steps["loss"][1]) == pytest.approx(history[0]["train_loss"], rel=1e-5)


def test_export_predicts_a_real_mp4_every_40_ms(main_job, tmp_path):
    from media_samples import astronaut_face_video

    from emorec.predict import predict_media

    run_dir, _, _, _ = main_job
    video = astronaut_face_video(tmp_path / "talk.mp4", seconds=2.0)
    offline = predict_media(run_dir / "export", video.path, cache_dir=tmp_path / "faces")
    frames = round(2.0 / FRAME_PERIOD)
    assert offline["predictions"].shape == (frames, 2)
    assert np.isfinite(offline["predictions"]).all()
    np.testing.assert_allclose(np.diff(offline["times"]), FRAME_PERIOD, atol=1e-9)
    streamed = predict_media(run_dir / "export", video.path, stream=True, chunk_frames=7,
                             cache_dir=tmp_path / "faces")
    np.testing.assert_allclose(streamed["predictions"], offline["predictions"], atol=1e-4)


def test_cached_demo_dataset_is_reused_and_repaired(main_job):
    from emorec.demo.cache import ensure_demo_dataset

    _, cache, _, _ = main_job
    with _environ(EMOREC_CACHE=str(cache), EMOREC_DEMO_SPEC=json.dumps(TINY_SPEC)):
        data_dir = ensure_demo_dataset(0.2, progress=False)
        manifest = data_dir / "manifest.json"
        shard = data_dir / "train" / "train_1.tfrecord"
        stamp, original = manifest.stat().st_mtime_ns, shard.read_bytes()
        with capture_logs("emorec.demo.cache") as messages:
            assert ensure_demo_dataset(0.2, progress=False) == data_dir
        assert manifest.stat().st_mtime_ns == stamp  # complete: nothing rewritten
        assert messages[0].startswith("demo corpus: using")

        shard.write_bytes(original[: len(original) // 2])  # damaged shard
        with capture_logs("emorec.demo.cache") as messages:
            ensure_demo_dataset(0.2, progress=False)
        assert "missing or damaged" in messages[0]
        assert shard.read_bytes() == original

        manifest.write_text("{not json")  # broken manifest
        with capture_logs("emorec.demo.cache") as messages:
            ensure_demo_dataset(0.2, progress=False)
        assert "unreadable manifest" in messages[0]
        assert shard.read_bytes() == original
        assert json.loads(manifest.read_text())["shards"]


def test_help_documents_the_demo_flow():
    text = build_parser("train").format_help()
    for words in ("without --data", "EMOREC_CACHE", "RUN_DIR/export", "eval/dev/metrics.json",
                  "learning_curves.png", "E_av"):
        assert words in text


def test_demo_section_leaves_the_paper_settings_alone():
    from emorec.config import config_path_for, resolve_config

    paper = resolve_config(config_path_for("ae_lstm"))
    demo = resolve_config(config_path_for("ae_lstm"), demo=True)
    assert paper.optimizer.learning_rate == 1e-4
    assert paper.loss.gamma == 0.01 and paper.data.batch_size == 32
    assert paper.training.epochs * paper.training.steps_per_epoch == 50_000
    # The demo trains the same architecture: only the BN moving-average momentum may differ.
    assert demo.model.replace(audio_bn_momentum=0.0) == paper.model.replace(audio_bn_momentum=0.0)
    assert demo.data.window == paper.data.window
    # The demo writes its checkpoints once, at the end, without Adam's moments (the lean run directory).
    assert (demo.training.checkpoints, demo.training.keep_optimizer_state) == ("end", False)
    assert (paper.training.checkpoints, paper.training.keep_optimizer_state) == ("epoch", True)


@pytest.mark.parametrize("name", ["ae_lstm_video", "ae_lstm_audio", "conv_lstm", "ae_2slstm"])
def test_each_ablation_trains_evaluates_and_exports_on_the_demo(main_job, tmp_path, name):
    from emorec.models.ae_lstm import CONFIG_CLASSES, VARIANTS

    _, cache, _, _ = main_job
    run_dir = tmp_path / "run"
    argv = ["--model", name, "--out", str(run_dir), "--no-progress"]
    # The tiny model's settings that this variant has (ae_lstm_video has no audio branch).
    tiny = [s for s in TINY_MODEL if s.split("=")[0].removeprefix("model.") in CONFIG_CLASSES[name].keys()]
    for setting in tiny + SCHEDULE:
        argv += ["--set", setting]
    with _environ(EMOREC_CACHE=str(cache), EMOREC_DEMO_SPEC=json.dumps(TINY_SPEC)):
        with contextlib.redirect_stdout(io.StringIO()):
            result = train_result(argv)
    assert result.global_step == 2
    raw = json.loads((run_dir / "eval/dev/metrics.json").read_text())["raw"]
    assert raw["num_frames"] == round(SECONDS / FRAME_PERIOD)
    assert all(np.isfinite(raw[d]["ccc"]) and -1 <= raw[d]["ccc"] <= 1 for d in ("arousal", "valence"))
    export = json.loads((run_dir / "export/export.json").read_text())
    assert sorted(export["modalities"]) == sorted(VARIANTS[name][0])
    assert "step" in export["streaming"]["signature"]
    # Only the models with a face decoder draw reconstructions.
    assert (run_dir / "reconstructions.png").is_file() == (name in ("ae_lstm_video", "ae_2slstm"))

"""emorec.evaluate on a real (2-step) e2e_audio training run over a tiny synthetic dataset."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from dataset_factory import make_dataset_dir

from emorec import evaluate as ev
from emorec.cli import main as cli_main
from emorec.config import resolve_config
from emorec.errors import ConfigError
from emorec.inference import RecordingPredictor
from emorec.metrics import evaluate_recordings
from emorec.postprocess import PostprocessParams, apply_postprocessing
from emorec.protocol import Protocol, load_protocol
from emorec.rundir import EvalDir, RunDir
from emorec.schema import FRAME_PERIOD

TINY_AUDIO = {"name": "e2e_audio", "lstm_units": 8, "lstm_layers": 2}
LENGTHS = [23, 37]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset (train 1, dev 2 labelled; test 1 unlabelled) and a run trained for 2 steps by the engine."""
    from emorec.training.engine import train

    root = tmp_path_factory.mktemp("eval")
    data_dir, truth = make_dataset_dir(
        root, recordings={"train": 1, "dev": 2, "test": 1}, frames=LENGTHS, window_frames=10,
        modalities=("audio",), labelled=("train", "dev"), seed=1,
    )
    config = resolve_config({
        "model": TINY_AUDIO,
        "data": {"window": 10 * FRAME_PERIOD, "modalities": ["audio"], "batch_size": 2,
                 "augment": False},
        "optimizer": {"name": "adam", "learning_rate": 1e-3},
        "training": {"epochs": 1, "max_steps": 2, "seed": 0, "strategy": "one"},
        "loss": {},
    })
    run_dir = root / "run"
    train(config, data_dir, run_dir, progress=False)
    return data_dir, run_dir, truth


def _csv_pairs(directory):
    pairs = {}
    for path in sorted(directory.glob("*.csv")):
        frame = pd.read_csv(path)
        assert list(frame.columns) == list(ev.CSV_COLUMNS)
        pairs[path.stem] = (frame[["gold_arousal", "gold_valence"]].to_numpy(),
                            frame[["arousal", "valence"]].to_numpy())
    return pairs


def _close(a, b):
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def test_tune_writes_outputs_and_metrics_match_csvs(trained, tmp_path):
    data_dir, run_dir, truth = trained
    (run_dir / RunDir.POSTPROCESS).unlink(missing_ok=True)
    out = tmp_path / "dev"
    result = ev.evaluate_run(run_dir, data_dir, "dev", "tune", out_dir=out, progress=False)
    assert (run_dir / RunDir.POSTPROCESS).is_file()
    on_disk = json.loads((out / EvalDir.METRICS).read_text())
    assert on_disk["raw"]["arousal"]["ccc"] == result["raw"]["arousal"]["ccc"]
    assert on_disk["eval_window"] == {"mode": "train", "inference": "window", "frames": 10, "chunk_frames": None}
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == ["dev_1.png", "dev_2.png"]

    raw = _csv_pairs(out / "predictions")
    assert {k: len(v[0]) for k, v in raw.items()} == {"dev_1": LENGTHS[0], "dev_2": LENGTHS[1]}
    for rid, (gold, _) in raw.items():
        np.testing.assert_allclose(gold, truth[rid]["labels"], atol=1e-6)
    frame = pd.read_csv(out / "predictions" / "dev_1.csv")
    # Label alignment "end": frame i predicts the label at 0.04 (i + 1).
    np.testing.assert_allclose(frame["time"], (np.arange(LENGTHS[0]) + 1) * FRAME_PERIOD)

    expected = evaluate_recordings(raw, ("arousal", "valence"), "avec")
    post = evaluate_recordings(_csv_pairs(out / "postprocessed"), ("arousal", "valence"), "avec")
    for name in ("arousal", "valence"):
        for key in ("ccc", "ccc_per_recording_mean", "pearson", "rmse"):
            assert _close(result["raw"][name][key], expected[name][key])
            assert _close(result["postprocessed"][name][key], post[name][key])
        # Tuning only keeps steps that raise the dev CCC.
        assert result["postprocessed"][name]["ccc"] >= result["raw"][name]["ccc"] - 1e-12

    # The post-processed CSVs are the stored chain applied to the raw CSVs.
    params = PostprocessParams.load(run_dir / RunDir.POSTPROCESS)
    again = apply_postprocessing(params, {k: v[1] for k, v in raw.items()})
    for rid, (_, pred) in _csv_pairs(out / "postprocessed").items():
        np.testing.assert_allclose(pred, again[rid], rtol=1e-6, atol=1e-7)


def test_apply_round_trip_and_unlabelled_test(trained, tmp_path):
    data_dir, run_dir, _ = trained
    tuned = ev.evaluate_run(run_dir, data_dir, "dev", "tune", out_dir=tmp_path / "t",
                            plots=False, progress=False)
    applied = ev.evaluate_run(run_dir, data_dir, "dev", "apply", out_dir=tmp_path / "a",
                              plots=False, progress=False)
    assert applied["postprocessed"] == tuned["postprocessed"]
    assert applied["postprocess"]["params"] == tuned["postprocess"]["params"]

    test = ev.evaluate_run(run_dir, data_dir, "test", "apply", out_dir=tmp_path / "test", progress=False)
    assert test["labelled"] is False and test["raw"] is None and test["postprocessed"] is None
    assert "no labels" in test["note"]
    frame = pd.read_csv(tmp_path / "test" / "predictions" / "test_1.csv")
    assert len(frame) == LENGTHS[0]
    assert frame[["gold_arousal", "gold_valence"]].isna().all().all()
    assert frame[["arousal", "valence"]].notna().all().all()
    assert (tmp_path / "test" / "postprocessed" / "test_1.csv").is_file()
    assert (tmp_path / "test" / "plots" / "test_1.png").stat().st_size > 1000


def test_eval_windows_equal_direct_model_calls(trained):
    from emorec.data import read_recordings

    data_dir, run_dir, _ = trained
    model = ev.load_best_model(run_dir)
    (rid, arrays), *_ = [r for r in read_recordings(data_dir, "dev") if r[0] == "dev_2"]
    audio = arrays["audio"][None]
    whole = model({"audio": audio}, training=False)["emotion"].numpy()[0]
    # Whole recording: one pass == chunks of 7 with the state carried over.
    chunked = RecordingPredictor(model, "whole", chunk_frames=7)(arrays)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    # Training window (10 frames): every window from a zero state; 37 = 10 + 10 + 10 + 7.
    windowed = RecordingPredictor(model, "window", 10, batch_size=3)(arrays)
    for start in range(0, 37, 10):
        part = model({"audio": audio[:, start:start + 10]}, training=False)["emotion"].numpy()[0]
        np.testing.assert_allclose(windowed[start:start + 10], part, atol=1e-5)
    assert not np.allclose(windowed[10:], whole[10:], atol=1e-5)  # the state reset matters
    # Sliding windows: frame f is the last output of the window ending at f (shorter at the start).
    sliding = RecordingPredictor(model, "sliding", 4, batch_size=5)(arrays)
    for end in (0, 2, 3, 20, 36):
        part = model({"audio": audio[:, max(0, end - 3):end + 1]}, training=False)["emotion"].numpy()[0, -1]
        np.testing.assert_allclose(sliding[end], part, atol=1e-5)
    config = resolve_config({"model": TINY_AUDIO, "data": {"window": 0.4}})
    assert ev.resolve_eval_window("0.8", config) == 20
    assert ev.resolve_eval_window("train", config) == 10
    assert ev.resolve_eval_window("whole", config) is None


def test_cli_and_errors(trained, tmp_path, capsys):
    data_dir, run_dir, _ = trained
    out = tmp_path / "cli"
    assert cli_main(["evaluate", str(run_dir), "--data", str(data_dir), "--partition", "dev", "--eval-window",
                     "whole", "--chunk-frames", "5", "--out", str(out), "--no-plots", "--no-progress"]) == 0
    result = json.loads((out / EvalDir.METRICS).read_text())
    assert result["eval_window"] == {"mode": "whole", "inference": "whole", "frames": None, "chunk_frames": 5}
    assert not (out / "plots").exists()
    assert "CCC" in capsys.readouterr().out

    assert cli_main(["evaluate", str(tmp_path / "nope"), "--data", str(data_dir), "--partition", "dev"]) == 2
    assert "config.yaml" in capsys.readouterr().err
    assert cli_main(["evaluate", str(run_dir), "--data", str(data_dir), "--partition", "test",
                     "--postprocess", "tune"]) == 2
    assert "error: --postprocess tune chooses the chain on dev" in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.yaml", bare / "config.yaml")
    shutil.copy(run_dir / "best.keras", bare / "best.keras")
    assert cli_main(["evaluate", str(bare), "--data", str(data_dir), "--partition", "test",
                     "--postprocess", "apply"]) == 2
    assert "postprocess.json" in capsys.readouterr().err


def test_protocol_file_matches_builtin_copy():
    from emorec.protocol import default_protocol_path

    assert default_protocol_path().is_file()
    assert load_protocol() == Protocol()
    assert load_protocol().metrics.convention == "avec"


def test_protocol_keys_take_effect(trained, tmp_path):
    data_dir, run_dir, _ = trained
    base = load_protocol().to_dict()
    # metrics.also: only the listed extras are reported.
    lean = dict(base, metrics={"convention": "avec", "also": ["rmse"]})
    result = ev.evaluate_run(run_dir, data_dir, "dev", protocol=lean, out_dir=tmp_path / "lean", plots=False,
                             progress=False)
    assert set(result["raw"]["arousal"]) == {"ccc", "rmse"} and "E_av" in result["raw"]
    # postprocess.steps: the chain is the protocol's, in its order.
    smoothing = dict(base, postprocess={**base["postprocess"], "steps": ["exponential_smoothing", "centring"]})
    result = ev.evaluate_run(run_dir, data_dir, "dev", "tune", protocol=smoothing, out_dir=tmp_path / "s",
                             plots=False, progress=False)
    dims = result["postprocess"]["params"]["dimensions"]
    assert [s["step"] for s in dims[0]["steps"]] == ["exponential_smoothing", "centring"]
    assert dims[0]["order"] == ["exponential_smoothing", "centring"]
    # partitions.apply: the stored chain is refused elsewhere.
    dev_only = dict(base, partitions={"tune": "dev", "apply": ["dev"]})
    with pytest.raises(ConfigError, match=r"applies the stored chain only on dev \(partitions.apply\)"):
        ev.evaluate_run(run_dir, data_dir, "test", "apply", protocol=dev_only, out_dir=tmp_path / "x",
                        progress=False)
    # inference.eval_window: the default window, and the stored chain remembers it.
    whole = dict(base, inference={"eval_window": "whole", "chunk_frames": 750})
    result = ev.evaluate_run(run_dir, data_dir, "dev", protocol=whole, out_dir=tmp_path / "w", plots=False,
                             progress=False)
    assert result["eval_window"]["mode"] == "whole"
    with pytest.raises(ConfigError, match=r"unknown protocol key\(s\) headline"):
        load_protocol(dict(base, headline="concatenated"))
    with pytest.raises(ConfigError, match=r"postprocess.steps\[0\] must be one of"):
        load_protocol(dict(base, postprocess={"steps": ["wiener"]}))


def test_applying_a_chain_tuned_on_another_window_is_refused(trained, tmp_path):
    data_dir, run_dir, _ = trained
    ev.evaluate_run(run_dir, data_dir, "dev", "tune", out_dir=tmp_path / "t", plots=False, progress=False)
    params = PostprocessParams.load(run_dir / RunDir.POSTPROCESS)
    assert params.inference == {"eval_window": "train", "mode": "window", "frames": 10}
    with pytest.raises(ConfigError, match=r"tuned on predictions made with eval window 'train'.*--eval-window"):
        ev.evaluate_run(run_dir, data_dir, "dev", "apply", eval_window="whole", out_dir=tmp_path / "a",
                        plots=False, progress=False)


def test_chen_jin_protocol_smooths(trained, tmp_path):
    from emorec.protocol import default_protocol_path

    data_dir, run_dir, _ = trained
    path = default_protocol_path().parent / "avec2015.yaml"
    result = ev.evaluate_run(run_dir, data_dir, "dev", "tune", protocol=path, out_dir=tmp_path / "cj",
                             plots=False, progress=False)
    assert result["protocol"] == "avec2015" and result["eval_window"]["mode"] == "whole"
    steps = result["postprocess"]["params"]["dimensions"][0]["steps"]
    assert [s["step"] for s in steps] == ["exponential_smoothing"]


def test_video_model_gets_faces_in_unit_range(tmp_path):
    """Faces come out of read_recordings as uint8; the model must see them /255, as in training."""
    pytest.importorskip("emorec.models.ae_lstm")
    from test_export import make_run

    from emorec.data import read_recordings

    run_dir, model = make_run(tmp_path, {"name": "ae_lstm_video", "face_size": 16, "lstm_units": 8},
                              modalities=("video",))
    data_dir = tmp_path / "dataset"
    result = ev.evaluate_run(run_dir, data_dir, "dev", out_dir=tmp_path / "out", eval_window="whole",
                             plots=False, progress=False)
    (_, arrays), = list(read_recordings(data_dir, "dev"))
    want = model({"video": arrays["video"][None] / 255.0}, training=False)["emotion"].numpy()[0]
    got = pd.read_csv(tmp_path / "out" / "predictions" / "dev_1.csv")[["arousal", "valence"]].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert result["labelled"] and result["raw"]["num_frames"] == 12

"""The main job of feature_lstm, ``emorec train --model feature_lstm`` without --data, on a tiny demo corpus.

The demo corpus (one train and one dev recording of 4 s, ``$EMOREC_DEMO_SPEC``)
is built into a fresh cache with audio_lld and video_geometric extracted (a
PCA to 84 dimensions needs more frames than 4 s give); two epochs of 2 s
sequences. The full-size run and its figures are in docs/feature_lstm.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
import yaml

from emorec.cli import main as cli_main

pytestmark = pytest.mark.slow


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


def test_main_job_extracts_trains_evaluates_and_exports(tmp_path):
    pytest.importorskip("dlib", reason="video_geometric needs dlib (pip install 'emorec[landmarks]')")
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    argv = ["train", "--model", "feature_lstm", "--features", "audio_lld,video_geometric", "--out", str(run_dir),
            "--epochs", "2", "--batch-size", "4", "--set", "data.window=2", "--set", "data.hop=0.4", "--set", "model.layers=[16]",
            "--no-progress"]
    stdout = io.StringIO()
    spec = {"seconds": 4.0, "subjects": [["train", 1], ["dev", 1]]}
    with _environ(EMOREC_CACHE=str(cache), EMOREC_DEMO_SPEC=json.dumps(spec)), contextlib.redirect_stdout(stdout):
        assert cli_main(argv) == 0
    text = stdout.getvalue()
    assert "offline signature only" in text and "dev, raw: CCC arousal" in text
    datasets = [p.name for p in (cache / "demo").iterdir() if "-feat-" in p.name]
    assert len(datasets) == 1 and datasets[0].startswith("2s-")  # the hop is cut at read time
    assert datasets[0].endswith("-feat-audio_lld+video_geometric-nomedia")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["features"] == ["audio_lld", "video_geometric"]
    assert config["model"]["feature_dims"] == [76, 286] and config["optimizer"]["name"] == "rmsprop_nesterov"
    metrics = json.loads((run_dir / "eval" / "dev" / "metrics.json").read_text())
    assert metrics["protocol"] == "avec2015" and metrics["eval_window"]["inference"] == "whole"
    export = json.loads((run_dir / "export" / "export.json").read_text())
    assert export["feature_sets"] == {"audio_lld": 76, "video_geometric": 286}
    summary = json.loads((run_dir / "demo_summary.json").read_text())
    assert summary["global_step"] > 0 and set(summary["timings_s"]) >= {"build", "train", "evaluate", "export"}

"""emorec reproduce: a grid resolved against a dataset, run once (resumable), fused, and written as tables."""

from __future__ import annotations

import csv
import textwrap

import pytest
from feature_samples import feature_corpus

from emorec.cli import main as cli_main
from emorec.errors import ConfigError
from emorec.reproduce.grid import grid_path, load_grid
from emorec.reproduce.runner import DONE_FILE

GRID = textwrap.dedent("""
    name: tiny
    paper: a test grid
    config: feature_lstm
    feature_sets:
      cue: [cues]
      noise: {arousal: [other], valence: [missing_set, other]}
      ecg: [ECG]
    defaults: {loss: mse, layers: [40]}
    quick:
      layer_scale: 0.2
      overrides:
        data: {window: 4.0, batch_size: 4}
        optimizer: {learning_rate: 0.01}
        training: {epochs: 2, checkpoints: end, keep_optimizer_state: false}
    tables:
      - id: losses
        title: "losses, arousal"
        target: arousal
        columns:
          - {name: mse, metric: ccc, run: {loss: mse}}
          - {name: ccc, metric: ccc, run: {loss: ccc}}
        rows:
          - {label: cue, run: {features: [cue]}, paper: [0.5, 0.6]}
          - {label: ecg, run: {features: [ecg]}, paper: [0.1, 0.2]}
      - id: both
        title: "rmse and ccc"
        columns: [{target: arousal, metric: rmse}, {target: valence, metric: ccc}]
        rows:
          - {label: cue+noise, run: {features: [cue, noise], fusion: layered, layers: [40, 40]}, paper: [0.2, 0.4]}
      - id: smooth
        title: smoothing
        kind: smoothing
        columns: [{metric: alpha}, {metric: original}, {metric: smoothed}]
        rows:
          - {label: cue, target: arousal, run: {features: [cue]}, paper: [0.1, 0.5, 0.51]}
      - id: late
        title: late fusion
        kind: fusion
        members:
          arousal: [{features: [cue], loss: mse}, {features: [cue], loss: ccc}, {features: [ecg]}]
        columns: [{target: arousal, metric: ccc}]
        rows:
          - {label: best single, fusion_row: best_single_run, paper: [0.7]}
          - {label: entire dev, fusion_row: fusion_entire_dev_refit, paper: [0.8]}
""")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    feature_corpus(root, seconds=8.0)
    out = tmp_path_factory.mktemp("ds") / "ds"
    assert cli_main(["build", "recola", str(root), str(out), "--features", "cues,other", "--modalities", "none",
                     "--window", "4", "--no-progress", "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "tiny.yaml"
    path.write_text(GRID)
    return path


def test_grid_resolution(grid_file):
    grid = load_grid(grid_file, {"cues": 3, "other": 3}, quick=True)
    runs = grid.runs()
    # losses: 2 runs (ecg n/a); both: one per target; smoothing and fusion reuse the losses' runs.
    assert len(runs) == 4
    cells = {(c.table, c.row, c.column): c for t in grid.tables for c in t.cells}
    assert cells[("losses", "ecg", "mse")].run is None
    assert cells[("losses", "ecg", "mse")].missing == "no ecg (ECG) in the dataset"
    cue = cells[("losses", "cue", "mse")].run.as_dict
    assert cue == {"features": ["cues"], "targets": ["arousal"], "loss": "mse", "layers": [8]}
    both = cells[("both", "cue+noise", "valence ccc")].run.as_dict
    assert both["features"] == ["cues", "other"] and both["fusion"] == "layered" and both["layers"] == [8, 8]
    assert cells[("smooth", "cue", "alpha")].run.key == cells[("losses", "cue", "mse")].run.key
    assert [m if isinstance(m, str) else m.as_dict["loss"] for m in grid.tables[3].members["arousal"]] == [
        "mse", "ccc", "no ecg (ECG) in the dataset"]
    full = load_grid(grid_file, {"cues": 3, "other": 3})
    assert full.tables[0].cells[0].run.as_dict["layers"] == [40]
    with pytest.raises(ConfigError, match="--map nothing=x"):
        load_grid(grid_file, {}, overrides={"nothing": "x"})
    assert grid_path("chen_jin").is_file()
    chen_jin = load_grid(grid_path("chen_jin"), {"audio_lld": 76, "audio_functionals": 1064,
                                                 "video_geometric": 286, "video_appearance": 84}, quick=True)
    assert {t.id for t in chen_jin.tables} == {f"table{k}" for k in range(2, 12)}
    assert 40 <= len(chen_jin.runs()) <= 60


@pytest.mark.slow
def test_reproduce_command_runs_once_and_resumes(dataset, grid_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["reproduce", "tiny", "--grid", str(grid_file), "--data", str(dataset), "--out", str(out), "--quick",
            "--no-progress"]
    assert cli_main(args) == 0
    assert "losses, arousal" in capsys.readouterr().out
    done = sorted(out.glob(f"runs/*/{DONE_FILE}"))
    assert len(done) == 4
    stamps = [p.stat().st_mtime_ns for p in done]
    with open(out / "tables" / "losses.csv") as handle:
        rows = list(csv.DictReader(handle))
    cue = [r for r in rows if r["row"] == "cue"]
    assert [r["paper"] for r in cue] == ["0.5", "0.6"] and all(float(r["emorec"]) <= 1 for r in cue)
    assert [r["note"] for r in rows if r["row"] == "ecg"] == ["no ecg (ECG) in the dataset"] * 2
    markdown = (out / "tables" / "late.md").read_text()
    assert "| best single | 0.700 / " in markdown and (out / "fusion" / "late-arousal" / "fusion.json").is_file()
    assert "0.100 / " in (out / "tables" / "smooth.md").read_text()
    # A second run trains nothing: every run is finished.
    assert cli_main(args) == 0
    assert [p.stat().st_mtime_ns for p in done] == stamps

"""Broken exports and unwritable outputs: one line ``error: <path>: <problem>``, exit 2, nothing half-written."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from media_samples import speech_wav
from test_export import make_run

from emorec import export as ex
from emorec.cli import main as cli_main
from emorec.errors import ExportError
from emorec.rundir import ExportDir


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny e2e_audio run, its SavedModel export and a short speech wav."""
    root = tmp_path_factory.mktemp("faults")
    run_dir, model = make_run(root, {"name": "e2e_audio", "lstm_units": 4, "lstm_layers": 1})
    ex.export_run(run_dir, root / "export", model=model)
    speech_wav(root / "speech.wav", seconds=0.6)
    return root, run_dir, root / "export"


def _one_line_error(capsys, *parts) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err, err
    return err


def _broken_copy(exported, tmp_path, name="export"):
    root, _, export = exported
    copy = tmp_path / name
    shutil.copytree(export, copy)
    return copy, root / "speech.wav"


def _predict(export, wav, out, *extra) -> int:
    return cli_main(["predict", str(export), str(wav), "--out", str(out), "--no-progress", *extra])


def test_corrupt_saved_model_pb(exported, tmp_path, capsys):
    export, wav = _broken_copy(exported, tmp_path)
    pb = export / ExportDir.SAVED_MODEL / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 3])  # truncated, as by a full disk
    assert _predict(export, wav, tmp_path / "p.csv") == 2
    _one_line_error(capsys, f"{pb}: not a readable SavedModel graph", "export again")
    assert not (tmp_path / "p.csv").exists()
    pb.write_bytes(b"\x00garbage" * 50)
    assert _predict(export, wav, tmp_path / "p.csv") == 2
    _one_line_error(capsys, f"{pb}: not a readable SavedModel graph")


def test_missing_variables_index(exported, tmp_path, capsys):
    export, wav = _broken_copy(exported, tmp_path)
    index = export / ExportDir.SAVED_MODEL / "variables" / "variables.index"
    index.unlink()
    assert _predict(export, wav, tmp_path / "p.csv") == 2
    err = _one_line_error(capsys, f"{index}: missing")
    assert "TensorSliceReader" not in err
    assert not (tmp_path / "p.csv").exists()


def test_missing_variables_data(exported, tmp_path, capsys):
    export, wav = _broken_copy(exported, tmp_path)
    for data in (export / ExportDir.SAVED_MODEL / "variables").glob("variables.data-*"):
        data.unlink()
    assert _predict(export, wav, tmp_path / "p.csv") == 2
    _one_line_error(capsys, "variables: no variables.data-* file")


def test_missing_saved_model_and_unexported_runtime(exported, tmp_path, capsys):
    export, wav = _broken_copy(exported, tmp_path)
    shutil.rmtree(export / ExportDir.SAVED_MODEL / "variables")
    (export / ExportDir.SAVED_MODEL / "saved_model.pb").unlink()
    assert _predict(export, wav, tmp_path / "p.csv") == 2
    _one_line_error(capsys, "saved_model.pb: missing")
    assert _predict(exported[2], wav, tmp_path / "p.csv", "--runtime", "onnx") == 2
    _one_line_error(capsys, "export.json: this export has no onnx model (it has savedmodel)", "--format onnx")


def test_broken_export_json(exported, tmp_path, capsys):
    export, wav = _broken_copy(exported, tmp_path)
    (export / ExportDir.EXPORT_JSON).write_text("{not json")
    assert _predict(export, wav, tmp_path / "p.csv") == 2
    _one_line_error(capsys, f"{export / ExportDir.EXPORT_JSON}: cannot read it")
    (export / ExportDir.EXPORT_JSON).write_text(json.dumps({"model": "e2e_audio"}))
    assert _predict(export, wav, tmp_path / "p.csv") == 2
    _one_line_error(capsys, "not an emorec export description")


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_corrupt_onnx_and_litert_files(exported, tmp_path, capsys, fmt):
    pytest.importorskip({"onnx": "onnxruntime", "litert": "ai_edge_litert.interpreter"}[fmt])
    root, run_dir, _ = exported
    export = tmp_path / "export"
    ex.export_run(run_dir, export, formats=[fmt])
    capsys.readouterr()
    name = {"onnx": ExportDir.ONNX_STREAMING, "litert": ExportDir.LITERT_STREAMING}[fmt]
    (export / name).write_bytes(b"not a model at all" * 10)
    assert _predict(export, root / "speech.wav", tmp_path / "p.csv", "--runtime", fmt) == 2
    _one_line_error(capsys, f"{export / name}: cannot load the", "export again")
    (export / name).unlink()
    assert _predict(export, root / "speech.wav", tmp_path / "p.csv", "--runtime", fmt) == 2
    _one_line_error(capsys, f"{export / name}: missing")
    assert not (tmp_path / "p.csv").exists()


def test_predict_unwritable_out_fails_before_any_work(exported, tmp_path, capsys):
    root, _, export = exported
    wav = root / "speech.wav"
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    # Checked first: the export and the media are not even looked at (a missing export is not the error).
    assert _predict(tmp_path / "no_export", wav, blocker / "p.csv") == 2
    _one_line_error(capsys, f"{blocker / 'p.csv'}: cannot write the predictions there", "is not a folder")
    assert _predict(export, wav, tmp_path) == 2  # an existing folder
    _one_line_error(capsys, f"{tmp_path}: is a folder")
    assert _predict(export, wav, tmp_path / "p.csv", "--plot", str(blocker / "deep" / "p.png")) == 2
    _one_line_error(capsys, "cannot write the plot there")
    assert not (tmp_path / "p.csv").exists()  # the CSV was not written without its plot
    if sys.platform.startswith("linux"):
        assert _predict(export, wav, "/proc/emorec_test/p.csv") == 2
        _one_line_error(capsys, "/proc/emorec_test/p.csv: cannot write the predictions there")
    # A folder that does not exist yet is fine: it is created when the CSV is written.
    assert _predict(export, wav, tmp_path / "new" / "sub" / "p.csv") == 0
    assert (tmp_path / "new" / "sub" / "p.csv").is_file()


def test_evaluate_unwritable_out_writes_nothing(exported, tmp_path, capsys):
    from emorec.config import load_run_config

    _, run_dir, _ = exported
    data = load_run_config(run_dir).run["data_dir"]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for out, message in ((blocker / "eval", "is not a folder"), (blocker, "is a file, not a folder")):
        assert cli_main(["evaluate", str(run_dir), "--data", data, "--partition", "dev", "--postprocess", "tune",
                         "--out", str(out), "--no-progress"]) == 2
        _one_line_error(capsys, f"{out}: ", message)
        # Checked before the evaluation: no tuned chain left in the run directory.
        assert not (run_dir / "postprocess.json").exists()


def test_export_to_unwritable_place(exported, tmp_path, capsys):
    _, run_dir, _ = exported
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert cli_main(["export", str(run_dir), str(blocker / "export")]) == 2
    _one_line_error(capsys, f"{blocker / 'export'}: cannot write the export here")


def test_failed_conversion_leaves_previous_export_intact(exported, tmp_path, monkeypatch):
    _, run_dir, export = exported
    out = tmp_path / "export"
    shutil.copytree(export, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    info_before = (out / ExportDir.EXPORT_JSON).read_bytes()
    from emorec import export_formats

    def broken(function):
        raise RuntimeError("converter exploded\nwith a long traceback")

    monkeypatch.setattr(export_formats, "onnx_bytes", broken)
    with pytest.raises(ExportError, match=r"model.onnx: cannot convert model e2e_audio to onnx \(converter exploded\)"):
        ex.export_run(run_dir, out, formats=["savedmodel", "onnx"])
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # no staging folder either
    assert (out / ExportDir.EXPORT_JSON).read_bytes() == info_before


def test_missing_converter_and_unknown_format(exported, tmp_path, monkeypatch, capsys):
    _, run_dir, _ = exported
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if not installed
    assert cli_main(["export", str(run_dir), str(tmp_path / "export"), "--format", "onnx"]) == 2
    _one_line_error(capsys, "pip install 'emorec[onnx]'")
    assert not (tmp_path / "export" / ExportDir.EXPORT_JSON).exists()
    with pytest.raises(ExportError, match="unknown export format"):
        ex.export_run(run_dir, tmp_path / "export", formats=["pb"])

"""The ``emorec`` command: subcommands, exit codes, the python -m forms, and a terminal free of TF's C++ log."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from dataset_factory import make_dataset_dir

from emorec import cli
from emorec.console import _LineFilter
from emorec.errors import ConfigError


def _run(*args, env=None, timeout=300):
    env = dict(os.environ, **(env or {}))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # what a user's shell has
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("build", "validate", "train", "evaluate", "export", "predict"):
        assert f"    {name} " in out, name
    # Every subcommand takes -v/--verbose and -q/--quiet.
    for name in cli.COMMANDS:
        text = cli.build_parser(name).format_help()
        assert "--verbose" in text and "--quiet" in text, name


def test_parsers_do_not_import_tensorflow():
    # The terminal filter must be in place before TensorFlow loads, so building the parser may not load it.
    code = ("import sys; from emorec.cli import build_parser; build_parser(); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    proc = _run("-c", code)
    assert proc.stdout.strip() == "False False", proc.stderr


def test_bad_input_is_exit_2_and_a_bug_is_a_traceback(monkeypatch, capsys, tmp_path):
    module = cli.build_parser("validate").parse_args([str(tmp_path)])._module

    def broken(args):
        raise ConfigError(f"{tmp_path / 'x.yaml'}: something is wrong")

    monkeypatch.setattr(module, "run", broken)
    assert cli.main(["validate", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'x.yaml'}: something is wrong\n"

    def bug(args):
        raise KeyError("labels")

    monkeypatch.setattr(module, "run", bug)
    with pytest.raises(KeyError):  # not dressed up as bad input: the traceback and exit 1 stay
        cli.main(["validate", str(tmp_path)])


def test_unknown_model_is_a_config_error(capsys, tmp_path):
    data_dir, _ = make_dataset_dir(tmp_path, recordings={"train": 1}, frames=5, window_frames=5,
                                   modalities=("audio",))
    assert cli.main(["train", "--model", "no_such_model", "--data", str(data_dir), "--out",
                     str(tmp_path / "run")]) == 2
    assert "no training config for model 'no_such_model'" in capsys.readouterr().err


def test_no_tensorflow_log_lines_at_default_verbosity(tmp_path):
    data_dir, _ = make_dataset_dir(tmp_path, recordings={"train": 1}, frames=12, window_frames=6,
                                   modalities=("audio",))
    quiet = _run("-m", "tfrecords_tools.validate", str(data_dir), env={"EMOREC_STDERR_FILTER": "1"})
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("OK: ")
    assert "I0000" not in quiet.stderr and "E0000" not in quiet.stderr and "absl" not in quiet.stderr, quiet.stderr
    loud = _run("-m", "emorec.cli", "validate", str(data_dir), "--verbose", env={"EMOREC_STDERR_FILTER": "1"})
    assert loud.returncode == 0 and "0000 " in loud.stderr, loud.stderr


def test_python_m_forms_run_the_same_command(tmp_path):
    for module in ("emorec.train", "emorec.evaluate", "emorec.export", "emorec.predict", "tfrecords_tools.build",
                   "tfrecords_tools.validate"):
        proc = _run("-m", module, "--help", timeout=60)
        assert proc.returncode == 0 and f"python -m {module}" in proc.stdout, (module, proc.stderr)


def test_line_filter_drops_cpp_lines_and_keeps_everything_else():
    data = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            b"I0000 00:00:1795511917.028271    5719 port.cc:153] oneDNN custom operations\n"
            b"\repoch 1/3:  10%|# | 5/50\rEpoch 1/3:  12%\n"
            b"E0000 00:00:1795511922.191635    5719 cuda_platform.cc:52] failed call to cuInit\n"
            b"error: something\nIn 1971 we\nE0000 00:00:1795511922.1916 5719 meta_optimizer.cc:967] remapper\n"
            b"Traceback (most recent call last)\nI am fine")
    want = b"\repoch 1/3:  10%|# | 5/50\rEpoch 1/3:  12%\nerror: something\nIn 1971 we\nTraceback (most recent call last)\nI am fine"
    for step in (1, 3, 7, 64, len(data)):  # however the pipe splits the stream
        out = []
        line_filter = _LineFilter(out.append)
        for i in range(0, len(data), step):
            line_filter.feed(data[i:i + step])
        line_filter.close()
        assert b"".join(out) == want, step


def test_stderr_filter_stops_at_exit_while_a_child_holds_descriptor_2(tmp_path):
    # multiprocessing's resource tracker (started by the demo build's worker pool) inherits
    # descriptor 2 and outlives us: the filter's pipe then never reaches end-of-file, and the
    # exit used to wait the 5 s join timeout with the pump still blocked.
    from emorec import console

    console._install_fd_filter()
    thread = console._state["thread"]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        console._remove_fd_filter()
        assert not thread.is_alive()
        assert "thread" not in console._state
    finally:
        child.kill()
        child.wait()


_EXIT_SCRIPT = """
import atexit, sys, threading, time
import tensorflow
from emorec.cli import exit_with
from emorec.console import configure
configure(0)  # the stderr filter, drained by its exit handler
atexit.register(lambda: open(sys.argv[1], "w").write("handler ran"))
if sys.argv[2] == "thread":
    threading.Thread(target=lambda: (time.sleep(1), open(sys.argv[1] + ".thread", "w").write("done"))).start()
print("last line", flush=False)
sys.stderr.write("unflushed error line\\n")
exit_with(3)
"""


@pytest.mark.parametrize("other_thread", [False, True])
def test_exit_with_keeps_status_output_and_exit_handlers(tmp_path, other_thread):
    # With TensorFlow loaded the interpreter's teardown is skipped (os._exit), except while
    # another thread still runs; either way nothing printed or registered is lost.
    marker = tmp_path / "marker"
    script = tmp_path / "exit.py"
    script.write_text(_EXIT_SCRIPT)
    result = _run(str(script), str(marker), "thread" if other_thread else "none",
                  env={"EMOREC_STDERR_FILTER": "1"})
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == "last line"
    assert "unflushed error line" in result.stderr
    assert marker.read_text() == "handler ran"
    assert (tmp_path / "marker.thread").exists() == other_thread

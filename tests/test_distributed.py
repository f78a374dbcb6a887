"""Replicas add up to one device: MirroredStrategy over 2 logical CPUs and 2 localhost workers.

Every run happens in its own process (logical devices and the multi-worker
runtime must be set up before TensorFlow initialises), all four at once:
one device (reference), MirroredStrategy over two logical CPU devices, and
two MultiWorkerMirroredStrategy workers on 127.0.0.1. Each trains the tiny
model (with L2 regularisation, so the per-replica share of ``model.losses``
is checked too) for 2 epochs of 3 global batches of 4 windows and dumps its
per-step losses and final weights.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from _tiny_model import NAME, tiny_config
from dataset_factory import make_dataset_dir

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().parent / "_train_worker.py"
RTOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("distributed")
    data_dir, _ = make_dataset_dir(root, recordings={"train": 3, "dev": 1}, frames=[45, 38, 50],
                                   window_frames=10, modalities=("audio",))
    config = tiny_config(epochs=2)
    config["model"]["l2"] = 1e-2  # large enough that counting it once per replica would show
    config_path = root / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    common = ["--", "--model", NAME, "--config", str(config_path), "--data", str(data_dir), "--no-progress"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    jobs = {
        "one": (["--cpus", "1"], ["--strategy", "one", "--out", str(root / "one")], env),
        "mirrored": (["--cpus", "2"], ["--strategy", "mirrored", "--out", str(root / "mirrored")], env),
    }
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        jobs[f"worker{index}"] = (
            [], ["--strategy", "multiworker", "--out", str(root / "multiworker")],
            dict(env, TF_CONFIG=tf_config),
        )
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(WORKER), "--dump", str(root / f"{name}.npz"), *pre, *common, *post],
            env=job_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for name, (pre, post, job_env) in jobs.items()
    }
    results = {}
    try:
        for name, proc in procs.items():
            out, _ = proc.communicate(timeout=540)
            assert proc.returncode == 0, f"{name} failed:\n{out.decode()[-3000:]}"
            results[name] = dict(np.load(root / f"{name}.npz"))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    results["root"] = root
    return results


def _assert_same_training(a: dict, b: dict) -> None:
    assert len(a["losses"]) == len(b["losses"]) == 6
    np.testing.assert_allclose(b["losses"], a["losses"], rtol=RTOL)
    weights = sorted(k for k in a if k.startswith("w"))
    assert weights and weights == sorted(k for k in b if k.startswith("w"))
    for key in weights:
        # Relative to the array's scale: elementwise relative error is meaningless near zero.
        np.testing.assert_allclose(b[key], a[key], rtol=RTOL, atol=RTOL * np.abs(a[key]).max(), err_msg=key)


def test_training_moved_the_weights(runs):
    assert runs["one"]["losses"][-1] < runs["one"]["losses"][0]


def test_mirrored_two_cpus_matches_one_device(runs):
    _assert_same_training(runs["one"], runs["mirrored"])
    config = yaml.safe_load((runs["root"] / "mirrored" / "config.yaml").read_text())
    assert config["run"]["num_replicas"] == 2 and config["run"]["strategy"] == "MirroredStrategy"


def test_two_workers_match_each_other_and_one_device(runs):
    for key in runs["worker0"]:
        np.testing.assert_array_equal(runs["worker0"][key], runs["worker1"][key], err_msg=key)
    _assert_same_training(runs["one"], runs["worker0"])
    run = runs["root"] / "multiworker"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["run"]["num_replicas"] == 2 and config["run"]["strategy"] == "MultiWorkerMirroredStrategy"
    # The chief alone wrote the run directory.
    assert (run / "best.keras").is_file() and len(json.loads((run / "history.json").read_text())) == 2
    # Only the newest resume checkpoint is kept.
    assert sorted(p.name for p in (run / "checkpoints" / "latest").glob("*.index")) == ["ckpt-6.index"]

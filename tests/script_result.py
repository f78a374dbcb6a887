"""Run a Python script in a fresh process (TF can only configure its devices once) and read its result."""

import json
import os
import subprocess
import sys

RESULT_PREFIX = "RESULT "


def run_script_result(script: str, timeout: int = 300) -> dict:
    """Run ``script`` with ``python -c`` on the CPU; return the JSON it printed after ``RESULT ``."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX))
    return json.loads(line[len(RESULT_PREFIX):])

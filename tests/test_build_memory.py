"""The memory benchmark's child reports its own peak, not the one it inherits across exec."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "build_memory.py"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_child_peak_excludes_parent_peak():
    # 300 MiB touched and freed here: Linux carries it into a child's ru_maxrss.
    block = np.ones(300 * 2**20 // 8)
    block[:] = 2.0
    del block
    code = (
        f"import runpy, resource; ns = runpy.run_path({str(BENCH)!r});"
        "print(ns['peak_rss_kib'](), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    own_kib, inherited_kib = (int(v) for v in out.stdout.split())
    assert inherited_kib >= 300 * 1024  # the artefact the benchmark must avoid
    assert own_kib < 150 * 1024  # an interpreter with numpy, far below the parent's 300 MiB

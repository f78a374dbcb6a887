"""Offline prediction runs in bounded memory: the peak RSS of 5 minutes of speech is that of 30 seconds."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "predict_memory.py"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc (VmHWM)")
def test_peak_memory_does_not_grow_with_length(tmp_path):
    # Before block-wise prediction, the tiny e2e_audio export took 2.6 GB on 5 minutes (whole-recording
    # activations of the speech CNN: about 0.25 MB a frame), so 10 x the length shows any growth.
    bench = runpy.run_path(str(BENCH))
    peaks = bench["compare"](0.5, 5.0, [], workdir=tmp_path, log=lambda line: None)
    ratio = peaks[5.0] / peaks[0.5]
    assert ratio <= 1.15, peaks

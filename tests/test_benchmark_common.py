"""benchmarks/_common.py: ratios to the matmul reference use the best measurement of the whole run."""

import contextlib
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _common  # noqa: E402


def test_ratio_printed_after_a_faster_matmul_uses_the_new_best():
    reference = _common.MatmulReference()
    reference.samples = [100e9]
    ratio = _common.BestRatio(60e9, reference, target=0.5)
    status = ratio.verdict()
    assert (str(ratio), str(status)) == ("0.60", "met")
    reference.samples.append(150e9)  # measured after the row was made
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _common.print_table(["case", "÷ matmul", "target"], [["x", ratio, status]])
    assert out.getvalue().splitlines()[-1].split() == ["x", "0.40", "NOT", "met"]
    assert float(ratio) == 0.4

"""emorec.plots: prediction figures are written atomically, as ordinary files, at the documented size."""

import os
import stat
import struct

import numpy as np
import pytest

from emorec.manifest import default_file_mode
from emorec.plots import plot_recording, pyplot, save_png


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plot_recording_is_an_ordinary_png_and_leaves_no_temporary(tmp_path):
    times = np.arange(50) * 0.04
    pred = np.stack([np.sin(times), np.cos(times)], axis=1)
    path = plot_recording(tmp_path / "plots" / "rec.png", times, pred, gold=pred * 0.5, title="rec")
    # 10 x 4.8 inches at 80 dpi; mode as a plain open() would give (mkstemp alone makes 0600).
    assert _png_size(path) == (800, 384)
    assert stat.S_IMODE(os.stat(path).st_mode) == default_file_mode()
    assert sorted(p.name for p in path.parent.iterdir()) == ["rec.png"]


def test_failed_save_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")
    fig = pyplot().figure()
    fig.savefig = lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        save_png(fig, path, dpi=50)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]

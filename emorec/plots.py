"""Prediction-vs-gold-standard figures, one PNG per recording (like Fig. 3 of Tzirakis et al.).

Matplotlib runs on the Agg backend: no display is needed and nothing is shown.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from emorec.manifest import default_file_mode
from emorec.metrics import DEFAULT_NAMES


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed).

    Returns:
        The ``matplotlib.pyplot`` module, with the Agg backend forced.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int) -> Path:
    """Write ``fig`` to ``path`` as a PNG atomically (temporary name, then rename) and close it.

    Args:
        fig: the matplotlib figure (closed afterwards, even on failure).
        path: the PNG to write (its folder is created; an existing file is replaced).
        dpi: dots per inch (the pixel size is ``figsize × dpi``).

    Returns:
        ``path``.
    """
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.chmod(tmp, default_file_mode())  # mkstemp makes it private; a figure is ordinary output
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def plot_recording(
    path: str | os.PathLike,
    times: np.ndarray,
    pred: np.ndarray,
    gold: np.ndarray | None = None,
    postprocessed: np.ndarray | None = None,
    title: str = "",
    names=DEFAULT_NAMES,
) -> Path:
    """Write one panel per dimension: prediction (and post-processed prediction) against gold.

    Args:
        path: the PNG to write (its folder is created).
        times: ``(N,)`` frame times in seconds (the x axis).
        pred: ``(N, D)`` predictions.
        gold: ``(N, D)`` gold standard, or None to leave it out.
        postprocessed: ``(N, D)`` post-processed predictions, or None.
        title: the title above the first panel ("" for none).
        names: the ``D`` dimension names, in column order (panel labels).

    Returns:
        ``path`` as a Path.
    """
    plt = pyplot()
    path = Path(path)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.4 * len(names)), sharex=True, squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[:, 0], names)):
        if gold is not None:
            ax.plot(times, gold[:, i], color="black", lw=1.2, label="gold standard")
        ax.plot(times, pred[:, i], color="tab:blue", lw=0.9, alpha=0.8, label="prediction")
        if postprocessed is not None:
            ax.plot(times, postprocessed[:, i], color="tab:red", lw=0.9, label="post-processed")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    return save_png(fig, path, dpi=80)

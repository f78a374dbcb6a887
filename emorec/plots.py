"""Prediction-vs-gold-standard figures, one PNG per recording (like Fig. 3 of Tzirakis et al.).

Matplotlib runs on the Agg backend: no display is needed and nothing is shown.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from emorec.metrics import DEFAULT_NAMES


def plot_recording(
    path: str | os.PathLike,
    times: np.ndarray,
    pred: np.ndarray,
    gold: np.ndarray | None = None,
    postprocessed: np.ndarray | None = None,
    title: str = "",
    names=DEFAULT_NAMES,
) -> Path:
    """Write one panel per dimension: prediction (and post-processed prediction) against gold; returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=80)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path

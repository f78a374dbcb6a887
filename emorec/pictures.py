"""Pictures of a training run: dev faces beside their reconstructions, and the learning curves.

Matplotlib runs on the Agg backend (no display). Both figures have a fixed
size in pixels (``figsize × dpi``; no tight bounding box), written to a
temporary name and renamed.

- ``reconstructions.png``: the first row holds dev face crops picked evenly
  across the dev recordings, the second the model's ``recon_video`` of them
  (models without a face decoder get no such figure).
- ``learning_curves.png``: the training loss terms per step (read from the
  run's TensorBoard events, epoch means from ``history.json`` as markers) and
  the CCCs: the per-batch training CCC per step and the dev CCC per epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emorec.plots import pyplot, save_png
from emorec.rundir import RunDir

DPI = 100
CURVES_FIGSIZE = (10.0, 7.0)  # inches: 1000 x 700 pixels at DPI
FACE_INCHES = 1.2  # per face in the reconstruction grid
DEFAULT_NUM_FACES = 8
_LOSS_TERMS = ("loss", "loss_2d", "loss_1d", "loss_ccc", "objective")
_DIMENSIONS = ("arousal", "valence")


def reconstruction_figure_size(num_faces: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of a reconstruction grid of ``num_faces`` columns.

    Args:
        num_faces: number of face columns (1.2 inches each at :data:`DPI`).

    Returns:
        ``(width, height)`` in pixels: two rows of faces plus a 0.3-inch title band.

    >>> reconstruction_figure_size(8)
    (960, 270)
    """
    return int(round(num_faces * FACE_INCHES * DPI)), int(round(2 * FACE_INCHES * DPI + 0.3 * DPI))


def learning_curves_size() -> tuple[int, int]:
    """``(width, height)`` in pixels of the learning-curve figure.

    Returns:
        :data:`CURVES_FIGSIZE` in inches times :data:`DPI`.

    >>> learning_curves_size()
    (1000, 700)
    """
    return int(round(CURVES_FIGSIZE[0] * DPI)), int(round(CURVES_FIGSIZE[1] * DPI))


def pick_frames(data, partition: str, names, num_faces: int = DEFAULT_NUM_FACES) -> dict:
    """Model inputs of ``num_faces`` frames with a face, spread evenly over the partition.

    The faces are shared out between the recordings (the first ones get one more when they
    do not divide evenly); within a recording the picks are evenly spaced over its frames
    with a face (all frames if none has one), away from its very start and end.

    Args:
        data: the dataset directory (or an open dataset handle).
        partition: the partition to pick from (``train``, ``dev``, ``test``).
        names: the model's input names (``video``, ``audio``, ``landmarks``...).
        num_faces: number of frames to pick in all.

    Returns:
        ``{name: (K, 1, ...) float32}`` with ``K <= num_faces`` one-frame sequences (faces
        scaled to ``[0, 1]``); empty when the partition has no recordings.
    """
    from emorec.data import read_recordings

    modalities = [m for m in ("audio", "video") if m in names]
    chosen: dict[str, list] = {k: [] for k in names}
    recordings = list(read_recordings(data, partition, modalities=modalities))
    if not recordings:
        return {}
    per = [num_faces // len(recordings) + (i < num_faces % len(recordings)) for i in range(len(recordings))]
    for (_, arrays), count in zip(recordings, per):
        if count == 0:
            continue
        found = arrays.get("face_found")
        candidates = np.nonzero(found > 0)[0] if found is not None else np.arange(len(arrays["video"]))
        if candidates.size == 0:
            candidates = np.arange(len(arrays["video"]))
        # Evenly spaced, away from the very start and end of the recording.
        picks = candidates[np.linspace(0, candidates.size - 1, count + 2)[1:-1].round().astype(int)]
        for name in names:
            values = np.asarray(arrays[name])[picks]
            if name == "video" and values.dtype == np.uint8:
                values = values.astype(np.float32) / 255.0
            chosen[name].append(np.asarray(values, np.float32))
    return {k: np.concatenate(v)[:, None] for k, v in chosen.items()}


def plot_reconstructions(model, data, path, partition: str = "dev",
                         num_faces: int = DEFAULT_NUM_FACES) -> Path | None:
    """Dev faces (top row) above the model's reconstructions (bottom row).

    Args:
        model: a trained model; only one with a ``video`` input and a ``recon_video`` output
            gets a figure.
        data: the dataset directory (or an open dataset handle).
        path: the PNG to write (its folder is created).
        partition: the partition the faces come from.
        num_faces: number of face columns.

    Returns:
        The path of the written PNG, or None when the model has no face decoder or the
        partition has no recordings.
    """
    from emorec.streaming import input_names

    names = input_names(model)
    if "video" not in names:
        return None
    inputs = pick_frames(data, partition, names, num_faces)
    if not inputs:
        return None
    outputs = model(inputs, training=False)
    if not isinstance(outputs, dict) or "recon_video" not in outputs:
        return None
    faces = inputs["video"][:, 0]
    recon = np.asarray(outputs["recon_video"])[:, 0]
    count = len(faces)
    plt = pyplot()
    width, height = reconstruction_figure_size(num_faces)
    fig, axes = plt.subplots(2, num_faces, figsize=(width / DPI, height / DPI), squeeze=False)
    for col in range(num_faces):
        for row, images in enumerate((faces, recon)):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < count:
                ax.imshow(np.clip(images[col], 0.0, 1.0), interpolation="nearest")
            else:
                ax.axis("off")
        if col == 0:
            axes[0, 0].set_ylabel(f"{partition} face", fontsize=8)
            axes[1, 0].set_ylabel("reconstruction", fontsize=8)
    mse = float(np.mean((recon - faces) ** 2))
    fig.suptitle(f"{partition} faces and their reconstructions (MSE {mse:.4f})", fontsize=9)
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.02, top=0.88, wspace=0.05, hspace=0.05)
    return save_png(fig, Path(path), dpi=DPI)


def read_step_scalars(run_dir, prefix: str = "train_step/") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (steps, values)}`` of the run's per-step TensorBoard scalars (``tb/events*``).

    Where a resumed run wrote a step twice, the value in the newest event file wins.

    Args:
        run_dir: the training run directory.
        prefix: the tag prefix to read; it is stripped from the names.

    Returns:
        ``{name: (steps, values)}``: int steps sorted ascending and float values, as numpy
        arrays (empty without event files).
    """
    import tensorflow as tf

    series: dict[str, dict[int, float]] = {}
    for events in sorted(RunDir(run_dir).tensorboard.glob("events.out.tfevents.*")):
        for raw in tf.data.TFRecordDataset(str(events)):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for value in event.summary.value:
                if not value.tag.startswith(prefix):
                    continue
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                # A resumed run rewrites steps after its checkpoint: the newest value wins.
                series.setdefault(value.tag[len(prefix):], {})[int(event.step)] = number
    out = {}
    for name, points in series.items():
        steps = np.array(sorted(points))
        out[name] = (steps, np.array([points[s] for s in steps]))
    return out


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or values.size < width:
        return values
    kernel = np.ones(width) / width
    # Running mean over the last `width` steps (shorter at the start).
    head = np.cumsum(values[: width - 1]) / np.arange(1, width)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_learning_curves(run_dir, path=None) -> Path:
    """Loss terms per step and CCCs (train per step, dev per epoch) of a run; returns the PNG path.

    Args:
        run_dir: the training run directory (its TensorBoard events and ``history.json``).
        path: the PNG to write; None writes the run's ``learning_curves.png``.

    Returns:
        The path of the written PNG (1000 x 700 pixels).
    """
    run = RunDir(run_dir)
    run_dir = run.path
    path = Path(path) if path is not None else run.learning_curves
    history_path = run.history_json
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    steps = read_step_scalars(run_dir)
    plt = pyplot()
    fig, (ax_loss, ax_ccc) = plt.subplots(2, 1, figsize=CURVES_FIGSIZE, sharex=True)
    epoch_steps = np.array([row["global_step"] for row in history])
    width = max(1, max((len(s[0]) for s in steps.values()), default=0) // 20)
    for k, term in enumerate(t for t in _LOSS_TERMS if t in steps or f"train_{t}" in (history[0] if history else {})):
        colour = f"C{k}"
        if term in steps:
            x, y = steps[term]
            ax_loss.plot(x, y, color=colour, alpha=0.25, lw=0.8)
            ax_loss.plot(x, _smooth(y, width), color=colour, lw=1.4, label=f"train {term}")
        values = [row.get(f"train_{term}") for row in history]
        if history and all(v is not None for v in values):
            ax_loss.plot(epoch_steps, values, "o", color=colour, ms=5,
                         label=None if term in steps else f"train {term} (epoch mean)")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss (log scale)")
    ax_loss.set_title(f"learning curves: {run_dir.name} (lines: per step, dots: epoch means)", fontsize=10)
    for k, name in enumerate(_DIMENSIONS):
        colour = f"C{k}"
        if f"ccc_{name}" in steps:
            x, y = steps[f"ccc_{name}"]
            ax_ccc.plot(x, _smooth(y, width), color=colour, lw=1.0, alpha=0.7, label=f"train batch CCC {name}")
        dev = [row.get(f"dev_ccc_{name}") for row in history]
        if history and all(v is not None for v in dev):
            ax_ccc.plot(epoch_steps, dev, "s-", color=colour, ms=7, lw=2, label=f"dev CCC {name}")
    ax_ccc.set_ylim(-0.2, 1.0)
    ax_ccc.set_ylabel("CCC")
    ax_ccc.set_xlabel("training step")
    for ax in (ax_loss, ax_ccc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return save_png(fig, path, dpi=DPI)


def write_run_pictures(run_dir, data=None, model=None, partition: str = "dev") -> dict[str, Path]:
    """Write both figures into ``run_dir``.

    The reconstructions need a model with a face decoder and a dataset.

    Args:
        run_dir: the training run directory.
        data: the dataset directory (or handle) to pick faces from; None skips the
            reconstruction figure.
        model: the trained model; None skips the reconstruction figure.
        partition: the partition the faces come from.

    Returns:
        ``{"learning_curves": path}`` plus ``"reconstructions"`` when that figure was written.
    """
    run = RunDir(run_dir)
    written = {"learning_curves": plot_learning_curves(run.path, run.learning_curves)}
    if model is not None and data is not None:
        grid = plot_reconstructions(model, data, run.reconstructions, partition)
        if grid is not None:
            written["reconstructions"] = grid
    return written

"""The fusion phase's inputs: the three trained branches' features of every clip, computed once and cached.

§3.5: "the multimodal fusion network is trained using the trained branches,
without the softmax layer, as feature extractors". The branches are frozen in
that phase, so their features do not change between epochs: they are
computed once per clip and partition (:func:`compute_clip_features`) and kept
in the fusion run's ``features/`` folder, keyed by the dataset, the clips and
the branch models (size and modification time of each ``best.keras``), so a
retrained branch or another dataset is never served stale features.

Per clip, as :func:`emorec.clips.data.fusion_dataset` samples it at evaluation
(no augmentation: the same clip always gives the same features):

- 48 faces, frame ``floor((i + 0.5) N / 48)``, through the frame branch → ``(48, D_f)``;
- 32 slices of 16 frames, start ``floor((j + 0.5) (max(N - 16, 0) + 1) / 32)``,
  through the C3D branch → ``(32, D_c)``;
- the middle second of sound through the audio branch → ``(D_a,)``;
- ``face_found (48,)`` of the sampled frames and ``audio_mask``, so the fusion
  can blank the visual features of a clip without any face and the audio
  features of a clip without sound (:func:`emorec.tasks.clip_classification.fusion_inputs`).

:class:`FusionData` is the dataset handle the fusion trains on: the clip
dataset (every question about partitions and classes goes to it) plus
``features(partition)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError
from emorec.manifest import atomic_write_bytes
from emorec.rundir import RunDir

logger = logging.getLogger(__name__)

BRANCH_NAMES = ("frame", "c3d", "audio")
BRANCH_INPUTS = {"frame": "face", "c3d": "clip", "audio": "audio"}
FEATURE_KEYS = ("clip_id", "label", "frame_features", "slice_features", "audio_features", "face_found",
                "audio_mask")
FEATURES_VERSION = 1


@dataclasses.dataclass(frozen=True)
class BranchRuns:
    """The run directories of the frame, C3D and audio branches a fusion uses."""

    frame: Path
    c3d: Path
    audio: Path

    def items(self):
        """``(branch, run_dir)`` in the order frame, C3D, audio."""
        return [(name, Path(getattr(self, name))) for name in BRANCH_NAMES]

    @classmethod
    def parse(cls, text: str) -> BranchRuns:
        """``FRAME_RUN,C3D_RUN,AUDIO_RUN`` (the ``--branches`` value).

        Raises:
            ConfigError: not three comma-separated paths.
        """
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 3 or not all(parts):
            raise ConfigError(f"--branches {text!r}: expected FRAME_RUN,C3D_RUN,AUDIO_RUN (three run directories)")
        return cls(*(Path(p) for p in parts))

    def save(self, run_dir) -> Path:
        """Write ``RUN_DIR/branches.json`` (paths inside the run relative to it)."""
        run = RunDir(run_dir)
        base = run.path.resolve()
        doc = {}
        for name, path in self.items():
            resolved = path.resolve()
            doc[name] = str(resolved.relative_to(base)) if resolved.is_relative_to(base) else str(resolved)
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run.branches, (json.dumps(doc, indent=2) + "\n").encode())
        return run.branches

    @classmethod
    def load(cls, run_dir) -> BranchRuns:
        """Read ``RUN_DIR/branches.json``.

        Raises:
            ConfigError: the file is missing or malformed.
        """
        run = RunDir(run_dir)
        try:
            doc = json.loads(run.branches.read_text())
            return cls(*(run.path / doc[name] for name in BRANCH_NAMES))
        except FileNotFoundError:
            raise ConfigError(f"{run.branches}: not found; {run.path} is not a trained emotiw fusion run") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{run.branches}: malformed ({exc!r})") from None


def check_branch_run(run_dir, branch: str) -> Path:
    """The ``best.keras`` of a branch run, checking that the run trained the expected model.

    Args:
        run_dir: the branch's training run directory.
        branch: ``frame``, ``c3d`` or ``audio``.

    Returns:
        The path of the run's ``best.keras``.

    Raises:
        ConfigError: no such run or model file, or a run of another model.
    """
    from emorec.config import load_run_config
    from emorec.models.emotiw import BRANCH_MODELS

    run = RunDir(run_dir)
    config = load_run_config(run.path)
    want = BRANCH_MODELS[branch]
    if config.model_name != want:
        raise ConfigError(f"{run.config}: the {branch} branch must be a run of {want}, this one trained "
                          f"{config.model_name}")
    if not run.best_model.is_file():
        raise ConfigError(f"{run.best_model}: not found; the {branch} branch run has no best model yet")
    return run.best_model


class BranchModels:
    """The three branch models (their best epochs) and traced feature functions."""

    def __init__(self, runs: BranchRuns, models: dict | None = None):
        from emorec.evaluate import load_keras_model

        self.runs = runs
        self.files = {name: check_branch_run(path, name) for name, path in runs.items()}
        models = models or {}
        self.models = {name: models.get(name) or load_keras_model(self.files[name]) for name in BRANCH_NAMES}
        face = self.models["frame"].input["face"].shape
        clip = self.models["c3d"].input["clip"].shape
        self.face_size = int(face[1])
        self.slice_frames, self.slice_size = int(clip[1]), int(clip[2])
        self.audio_samples = int(self.models["audio"].input["audio"].shape[1])
        self.dims = {name: int(m.output["features"].shape[-1]) for name, m in self.models.items()}
        self._functions = {name: _features_function(m, BRANCH_INPUTS[name]) for name, m in self.models.items()}

    def fingerprint(self) -> list:
        """What identifies the branch models: each ``best.keras`` path, size and modification time."""
        out = []
        for name in BRANCH_NAMES:
            stat = self.files[name].stat()
            out.append([name, str(self.files[name].resolve()), stat.st_size, stat.st_mtime_ns])
        return out

    def check_dims(self, config, where: str) -> None:
        """The fusion config's ``frame_dim``, ``slice_dim``, ``audio_dim`` are the branches' feature sizes.

        Raises:
            ConfigError: naming the branch run and both sizes.
        """
        for name, key in (("frame", "frame_dim"), ("c3d", "slice_dim"), ("audio", "audio_dim")):
            want = getattr(config, key)
            if want != self.dims[name]:
                raise ConfigError(f"{where}: model.{key} is {want} but the {name} branch "
                                  f"({self.runs.items()[BRANCH_NAMES.index(name)][1]}) gives {self.dims[name]} "
                                  f"features; set model.{key}={self.dims[name]}")

    def __call__(self, branch: str, inputs: np.ndarray) -> np.ndarray:
        """Features of a batch of one branch's inputs."""
        return self._functions[branch](inputs).numpy()


def _features_function(model, name: str):
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def features(x):
        return model({name: x}, training=False)["features"]

    return features


def clips_per_batch(branches: BranchModels, slices: int, budget_bytes: int = 256 << 20) -> int:
    """Clips read at once: as many as keep one batch's float32 slices within ``budget_bytes`` (1 to 16).

    At the paper's sizes (32 slices of 16 x 112 x 112 x 3) a clip's slices take 77 MB: 3 clips.

    Args:
        branches: the branch models (``slice_frames`` and ``slice_size`` are read).
        slices: slices per clip.
        budget_bytes: memory allowed for one batch's slices.

    Returns:
        ``budget_bytes`` over one clip's slice bytes, clipped to ``[1, 16]``.

    >>> from types import SimpleNamespace
    >>> clips_per_batch(SimpleNamespace(slice_frames=16, slice_size=112), slices=32)
    3
    """
    per_clip = slices * branches.slice_frames * branches.slice_size ** 2 * 3 * 4
    return max(1, min(16, budget_bytes // max(per_clip, 1)))


def compute_clip_features(data, partition: str, branches: BranchModels, frames: int, slices: int,
                          batch_clips: int | None = None, progress: bool = False) -> dict:
    """Every clip's branch features (module docstring) of one partition of a clip dataset.

    Args:
        data: a :class:`~emorec.clips.dataset.ClipDatasetHandle`.
        partition: the partition (or a fold's view of one).
        branches: the branch models.
        frames: faces per clip (48).
        slices: slices per clip (32).
        batch_clips: clips read per batch (default :func:`clips_per_batch`).
        progress: show a progress bar.

    Returns:
        ``{clip_id (N,) str, label (N,), frame_features (N, frames, D_f), slice_features (N, slices, D_c),
        audio_features (N, D_a), face_found (N, frames), audio_mask (N,)}``.
    """
    from tqdm import tqdm

    from emorec.clips.data import fusion_dataset

    ds = fusion_dataset(
        data.path, data.selection(partition), batch_size=batch_clips or clips_per_batch(branches, slices), num_frames=frames, num_slices=slices,
        slice_frames=branches.slice_frames, face_size=branches.face_size, slice_size=branches.slice_size,
        audio_seconds=branches.audio_samples / data.sample_rate, audio_scale="none", training=False,
    )
    parts: dict[str, list] = {key: [] for key in FEATURE_KEYS}
    total = len(data.clips(partition))
    with tqdm(total=total, desc=f"branch features ({partition})", unit="clip", disable=not progress) as bar:
        for batch in ds:
            faces = batch["faces"].numpy()
            clips = batch["slices"].numpy()
            n = faces.shape[0]
            frame = branches("frame", faces.reshape(-1, *faces.shape[2:])).reshape(n, frames, -1)
            slice_ = branches("c3d", clips.reshape(-1, *clips.shape[2:])).reshape(n, slices, -1)
            parts["frame_features"].append(frame)
            parts["slice_features"].append(slice_)
            parts["audio_features"].append(branches("audio", batch["audio"].numpy()))
            parts["clip_id"] += [c.decode() for c in batch["clip_id"].numpy()]
            parts["label"].append(batch["label"].numpy())
            parts["face_found"].append(batch["face_found"].numpy())
            parts["audio_mask"].append(batch["audio_mask"].numpy())
            bar.update(n)
    out = {key: (np.asarray(value) if key == "clip_id" else np.concatenate(value)) for key, value in parts.items()}
    for key in ("frame_features", "slice_features", "audio_features", "face_found", "audio_mask"):
        out[key] = out[key].astype(np.float32)
    out["label"] = out["label"].astype(np.int32)
    return out


def _cache_key(data, partition: str, branches: BranchModels, frames: int, slices: int) -> str:
    selection = data.selection(partition)
    ids = None if selection.clip_ids is None else sorted(selection.clip_ids)
    doc = {"version": FEATURES_VERSION, "data": str(Path(data.path).resolve()), "options": data.options,
           "partitions": list(selection.partitions), "clip_ids": ids, "branches": branches.fingerprint(),
           "frames": frames, "slices": slices}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_clip_features(data, partition: str, branches: BranchModels, frames: int, slices: int, cache_dir,
                         progress: bool = False) -> dict:
    """:func:`compute_clip_features`, read from ``cache_dir`` when computed before (written there otherwise).

    The cache file is ``<selection name>-<key>.npz``, the key hashing what the features depend
    on; an unreadable cache file is computed again and replaced.

    Args:
        data: the clip dataset.
        partition: the partition whose clips to encode.
        branches: the branch models.
        frames: frames sampled per clip (frame branch).
        slices: slices sampled per clip (C3D branch).
        cache_dir: the cache directory (created if missing).
        progress: show a progress bar while computing.

    Returns:
        The dict of :func:`compute_clip_features` (keys :data:`FEATURE_KEYS`).
    """
    selection = data.selection(partition)
    path = Path(cache_dir) / f"{selection.name}-{_cache_key(data, partition, branches, frames, slices)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                logger.info("branch features of %s: %s", selection.name, path)
                return {key: stored[key] for key in FEATURE_KEYS}
        except (OSError, ValueError, KeyError) as exc:
            logger.info("%s: unreadable feature cache (%s), computing again", path, exc)
    logger.info("computing the branch features of %s (%d clips)", selection.name, len(data.clips(partition)))
    features = compute_clip_features(data, partition, branches, frames, slices, progress=progress)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: (v.astype(str) if k == "clip_id" else v) for k, v in features.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return features


class FusionData:
    """A clip dataset seen through three trained branches: what the fusion trains and is evaluated on."""

    kind = "clips"

    def __init__(self, clips, branches: BranchModels, frames: int, slices: int, cache_dir,
                 progress: bool = False):
        self.clips_handle = clips
        self.branches = branches
        self.frames, self.slices = int(frames), int(slices)
        self.cache_dir = Path(cache_dir)
        self.progress = progress
        self._memory: dict[str, dict] = {}

    def __getattr__(self, name):
        # Partitions, classes, counts and paths are the clip dataset's.
        if name in ("clips_handle", "__setstate__"):
            raise AttributeError(name)
        return getattr(self.clips_handle, name)

    def __fspath__(self) -> str:
        return str(self.clips_handle.path)

    def features(self, partition: str) -> dict:
        """The branch features of a partition (computed once, then from memory or the cache)."""
        if partition not in self._memory:
            self._memory[partition] = cached_clip_features(
                self.clips_handle, partition, self.branches, self.frames, self.slices, self.cache_dir,
                self.progress)
        return self._memory[partition]


def fusion_data_for(run_dir, data, config, branches, models=None, progress: bool = False):
    """The :class:`~emorec.clip_features.FusionData` of a fusion run: its branches' features of ``data``.

    Args:
        run_dir: the fusion run directory (its ``features`` folder caches the branch features).
        data: the clip dataset.
        config: the fusion run's config (``model.frames``, ``model.slices`` and the feature sizes).
        branches: the branch runs (:class:`BranchRuns`).
        models: already loaded branch models by branch name (None entries are loaded from the
            runs).
        progress: show progress bars while computing features.

    Returns:
        The :class:`FusionData`; features are computed on first use per partition.

    Raises:
        ConfigError: a branch run that is missing, of another model, without a best model, or
            whose feature size differs from the config's.
    """
    branch_models = BranchModels(branches, models={k: v for k, v in (models or {}).items() if v is not None})
    branch_models.check_dims(config.model, config.source)
    return FusionData(data, branch_models, config.model.frames, config.model.slices, RunDir(run_dir).features,
                      progress=progress)

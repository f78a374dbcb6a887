"""Z-score normalisation of stored feature sets, applied when the data is read.

Chen & Jin normalise "all the features ... in each speaker set using
z-score": each speaker's frames are centred and scaled with that speaker's
own mean and standard deviation, dimension by dimension (test speakers
included: their statistics need no labels). The build stores, per recording
and feature set, the count, mean and population standard deviation of its
real frames (:class:`FeatureMoments`, ``ShardInfo.feature_stats``); the
reader pools them:

- ``speaker`` (default, the paper): the recordings of one ``subject_id``
  pooled (one recording per speaker in RECOLA);
- ``train``: the whole training partition pooled, applied to every
  partition (the usual machine-learning convention, and what a deployed model
  can do for a speaker it has heard nothing of);
- ``none``: the values as stored.

Frames without a face hold zeros in the video sets (the paper's padding) and
count in the statistics like any other frame, as they do in a z-score of the
padded feature files. A dimension that is constant for a speaker (standard
deviation below 1e-8) is only centred. Padding frames (``valid = 0``) stay 0.
"""

from __future__ import annotations

import numpy as np

from emorec.errors import ConfigError, DatasetError

FEATURE_NORMS = ("speaker", "train", "none")
DEFAULT_FEATURE_NORM = "speaker"
# Below this standard deviation a dimension is only centred (a constant would blow up).
MIN_STD = 1e-8


class FeatureMoments:
    """Count, mean and sum of squared deviations per dimension of rows seen block by block (float64).

    >>> m = FeatureMoments(2)
    >>> m.add(np.array([[1.0, 0.0], [3.0, 0.0]]))
    >>> m.add(np.array([[5.0, 0.0]]))
    >>> m.count, m.mean.tolist(), m.std.round(4).tolist()
    (3, [3.0, 0.0], [1.633, 0.0])
    """

    def __init__(self, dim: int):
        self.count = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)

    def add(self, rows: np.ndarray) -> None:
        """Take in ``(n, D)`` rows (Chan et al.'s pairwise update: stable over long recordings)."""
        rows = np.asarray(rows, dtype=np.float64)
        n = len(rows)
        if n == 0:
            return
        mean = rows.mean(axis=0)
        m2 = ((rows - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta * delta * self.count * n / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per dimension (zeros before any row)."""
        return np.sqrt(self.m2 / self.count) if self.count else np.zeros_like(self.mean)

    def to_dict(self) -> dict:
        """``{"count", "mean", "std"}`` as stored in ``ShardInfo.feature_stats``."""
        return {"count": int(self.count), "mean": self.mean.tolist(), "std": self.std.tolist()}


def pool(stats: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation of the frames of several recordings from their stored moments.

    Args:
        stats: ``{"count", "mean", "std"}`` per recording.

    Returns:
        ``(mean (D,), std (D,))`` float64, exactly those of all the frames together.

    >>> a = {"count": 2, "mean": [2.0], "std": [1.0]}   # frames 1, 3
    >>> b = {"count": 1, "mean": [5.0], "std": [0.0]}   # frame 5
    >>> [v.round(4).tolist() for v in pool([a, b])]
    [[3.0], [1.633]]
    """
    counts = np.array([s["count"] for s in stats], dtype=np.float64)
    means = np.array([s["mean"] for s in stats], dtype=np.float64)
    stds = np.array([s["std"] for s in stats], dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return np.zeros(means.shape[1]), np.zeros(means.shape[1])
    mean = (counts[:, None] * means).sum(axis=0) / total
    # Within-recording squares plus the spread of the recordings' means around the pooled mean.
    m2 = (counts[:, None] * (stds**2 + (means - mean) ** 2)).sum(axis=0)
    return mean, np.sqrt(m2 / total)


def scale_of(std: np.ndarray) -> np.ndarray:
    """What the z-score divides by: ``std``, or 1 where a dimension is constant.

    Args:
        std: per-dimension standard deviations.

    Returns:
        float64 array of ``std``'s shape: ``std``, with 1 where it is below :data:`MIN_STD`.

    >>> scale_of(np.array([2.0, 0.0])).tolist()
    [2.0, 1.0]
    """
    std = np.asarray(std, dtype=np.float64)
    return np.where(std < MIN_STD, 1.0, std)


def _stats(data, shard, name: str) -> dict:
    stats = (shard.feature_stats or {}).get(name)
    if stats is None:
        raise DatasetError(
            f"{data.path / 'manifest.json'}: recording {shard.recording_id} has no statistics for feature "
            f"set {name}; rebuild the dataset with this emorec"
        )
    return stats


def normalization(data, partition: str, names, mode: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per shard of ``partition`` (in shard order) the mean and scale each feature set is normalised with.

    Args:
        data: a :class:`~emorec.dataset.DatasetHandle`.
        partition: the partition read.
        names: the feature sets read.
        mode: one of :data:`FEATURE_NORMS`.

    Returns:
        ``{name: (means (shards, D), scales (shards, D))}`` float32; empty for ``none``.

    Raises:
        ConfigError: an unknown mode.
        DatasetError: a shard without stored statistics, or ``train`` without a training partition.
    """
    if mode not in FEATURE_NORMS:
        raise ConfigError(f"feature_norm must be one of {', '.join(FEATURE_NORMS)}, got {mode!r}")
    if mode == "none" or not names:
        return {}
    shards = data.shards(partition)
    out = {}
    for name in names:
        if mode == "train":
            train = data.shards("train")
            if not train:
                raise DatasetError(f"{data.path}: feature_norm train needs a train partition, the dataset has none")
            mean, std = pool([_stats(data, s, name) for s in train])
            means = np.repeat(mean[None], len(shards), axis=0)
            scales = np.repeat(scale_of(std)[None], len(shards), axis=0)
        else:
            by_speaker: dict[str, list[dict]] = {}
            for shard in data.manifest.shards.values():
                if shard.subject_id in {s.subject_id for s in shards}:
                    by_speaker.setdefault(shard.subject_id, []).append(_stats(data, shard, name))
            pooled = {subject: pool(stats) for subject, stats in by_speaker.items()}
            means = np.stack([pooled[s.subject_id][0] for s in shards])
            scales = np.stack([scale_of(pooled[s.subject_id][1]) for s in shards])
        out[name] = (means.astype(np.float32), scales.astype(np.float32))
    return out

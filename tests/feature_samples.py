"""A RECOLA-layout folder of released feature sets (no media) with known values, for the feature_lstm tests.

``feature_corpus(root)`` writes ``ratings_gold_standard/{arousal,valence}/<rid>.arff``
(the test recording unlabelled) and ``features_<set>/<rid>.arff`` per set;
set ``cues`` carries the labels (column 0 = arousal + noise, column 1 =
valence + noise, column 2 = noise) so that a model can learn from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from media_samples import write_gold_arff

from emorec.schema import FRAME_PERIOD

RECORDINGS = ("train_1", "train_2", "train_3", "dev_1", "dev_2", "test_1")


def write_feature_arff(path, recording_id: str, times, values, names=None, relation="features") -> Path:
    """An AVEC 2016 style feature ARFF: ``Instance_name``, ``frameTime``, then one attribute per column."""
    values = np.asarray(values, dtype=np.float64)
    names = names or [f"f{j}" for j in range(values.shape[1])]
    lines = [f"@relation {relation}", "", "@attribute Instance_name string", "@attribute frameTime numeric"]
    lines += [f"@attribute {name} numeric" for name in names]
    lines += ["", "@data"]
    lines += [",".join([recording_id, f"{t:.6f}", *(f"{v:.6f}" for v in row)]) for t, row in zip(times, values)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def labels_of(index: int, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Known arousal and valence of recording ``index`` (slow curves, different per recording)."""
    arousal = 0.4 * np.sin(2 * np.pi * times / (7.0 + index)) + 0.05 * index
    valence = 0.3 * np.cos(2 * np.pi * times / (11.0 + 2 * index)) - 0.05 * index
    return np.round(arousal, 6), np.round(valence, 6)


def feature_corpus(root, seconds: float = 12.0, recordings=RECORDINGS, extra_dims: int = 3):
    """Write the corpus; returns ``{recording: (times, arousal, valence, {set: values})}``.

    Feature rows sit at the label times (0.04 s steps from 0.04, AVEC's grid with
    ``label_alignment: end``); sets: ``cues`` (3 columns) and ``other``
    (``extra_dims`` columns of noise, scaled differently per recording).
    """
    root = Path(root)
    out = {}
    for index, rid in enumerate(recordings):
        rng = np.random.default_rng(index)
        n = int(round(seconds / FRAME_PERIOD))
        label_times = np.arange(n + 1) * FRAME_PERIOD
        arousal, valence = labels_of(index, label_times)
        if not rid.startswith("test"):
            gold = root / "ratings_gold_standard"
            write_gold_arff(gold / "arousal" / f"{rid}.arff", rid, label_times, arousal)
            write_gold_arff(gold / "valence" / f"{rid}.arff", rid, label_times, valence)
        times = label_times[1:]
        cues = np.stack([arousal[1:] + 0.05 * rng.standard_normal(n), valence[1:] + 0.05 * rng.standard_normal(n),
                         rng.standard_normal(n)], axis=1) * (1.0 + index) + index
        other = rng.standard_normal((n, extra_dims)) * (index + 1)
        write_feature_arff(root / "features_cues" / f"{rid}.arff", rid, times, cues, ["cue_a", "cue_v", "cue_n"])
        write_feature_arff(root / "features_other" / f"{rid}.arff", rid, times, other)
        out[rid] = (times, arousal[1:], valence[1:], {"cues": cues, "other": other})
    return out

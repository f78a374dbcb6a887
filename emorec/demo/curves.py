"""Smooth random arousal and valence curves that can be evaluated at any time."""

from __future__ import annotations

import dataclasses

import numpy as np

# Periods between 4 and 24 s: changes on the scale of a few seconds, like
# continuous annotations, yet slow enough for the media to follow.
_MIN_PERIOD_S = 4.0
_MAX_PERIOD_S = 24.0
_COMPONENTS = 4


@dataclasses.dataclass(frozen=True)
class EmotionCurve:
    """Arousal and valence as ``tanh`` of a per-dimension offset plus a few slow sinusoids."""

    offsets: np.ndarray  # (2,)
    amplitudes: np.ndarray  # (2, K)
    frequencies: np.ndarray  # (2, K) Hz
    phases: np.ndarray  # (2, K) rad

    def __call__(self, times) -> np.ndarray:
        """Return ``(len(times), 2)`` float64 values (arousal, valence) in (-1, 1)."""
        t = np.asarray(times, dtype=np.float64).reshape(-1, 1, 1)
        waves = self.amplitudes * np.sin(2 * np.pi * self.frequencies * t + self.phases)
        return np.tanh(self.offsets + waves.sum(axis=-1))


def random_curve(rng: np.random.Generator) -> EmotionCurve:
    """Draw one subject's curves; arousal and valence are independent.

    Each dimension gets four sinusoids with periods of 4 to 24 s, scaled so their sum has a
    standard deviation near 0.8, and an offset in ``[-0.25, 0.25)``.

    Args:
        rng: the random generator to draw from (advanced by the draws).

    Returns:
        The :class:`EmotionCurve`.

    >>> curve = random_curve(np.random.default_rng(0))
    >>> values = curve([0.0, 0.04, 10.0])
    >>> values.shape, bool(np.all(np.abs(values) < 1))
    ((3, 2), True)
    """
    amplitudes = rng.uniform(0.5, 1.0, size=(2, _COMPONENTS))
    # Scale so the summed sinusoids have a standard deviation near 0.8: after
    # tanh the curves cover most of (-1, 1) without sitting at the ends.
    amplitudes *= 0.8 / np.sqrt((amplitudes**2).sum(axis=1, keepdims=True) / 2)
    frequencies = 1.0 / rng.uniform(_MIN_PERIOD_S, _MAX_PERIOD_S, size=(2, _COMPONENTS))
    phases = rng.uniform(0, 2 * np.pi, size=(2, _COMPONENTS))
    offsets = rng.uniform(-0.25, 0.25, size=2)
    return EmotionCurve(offsets, amplitudes, frequencies, phases)

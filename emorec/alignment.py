"""Reconciling stream lengths with the label grid: how many 40 ms frames each stream covers.

A recording's audio, video, labels and released feature files each cover a
number of frames; the build takes one as the reference and trims or pads the
others within a tolerance (:func:`reconcile`), reporting each change. Used by
:mod:`emorec.recording` for media and by :mod:`emorec.features.arff` for
released feature sets.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from emorec.errors import AlignmentError
from emorec.schema import FRAME_PERIOD


def label_frames(times: np.ndarray, alignment: str) -> int:
    """Frames a label track covers: frame i needs the label at 0.04 (i + 1) ("end") or 0.04 i.

    Args:
        times: the label track's times in seconds (sorted; the last one is read).
        alignment: ``end`` or the other alignment (the label at a frame's start).

    Returns:
        The number of frames the labels reach (the last time rounded to whole frames).

    >>> ends, starts = np.array([0.04, 0.08, 0.12]), np.array([0.0, 0.04])
    >>> label_frames(ends, "end"), label_frames(starts, "start")
    (3, 2)
    """
    last = int(np.floor(float(times[-1]) / FRAME_PERIOD + 0.5))
    return last if alignment == "end" else last + 1


@dataclasses.dataclass
class Stream:
    """One stream's length, for the reconciliation."""

    name: str  # "audio", "video", "labels"
    path: str
    frames: int


def reconcile(reference: Stream, other: Stream, tolerance_s: float, recording_id: str) -> str | None:
    """Check one stream against the reference length; a report line, or None if equal.

    Args:
        reference: the stream whose length the recording takes (the labels', usually).
        other: the stream to check against it.
        tolerance_s: the largest difference in seconds that is trimmed or padded.
        recording_id: named in the report line and the error.

    Returns:
        None when the lengths agree, else the report line saying what was trimmed or padded.

    Raises:
        AlignmentError: the lengths differ by more than ``tolerance_s``.
    """
    diff = other.frames - reference.frames
    if diff == 0:
        return None
    seconds = abs(diff) * FRAME_PERIOD
    lengths = (
        f"{other.name} {other.path} covers {other.frames * FRAME_PERIOD:.2f} s ({other.frames} "
        f"frames), {reference.name} {reference.path} {reference.frames * FRAME_PERIOD:.2f} s "
        f"({reference.frames} frames)"
    )
    if seconds > tolerance_s + 1e-9:
        raise AlignmentError(
            f"recording {recording_id}: {lengths}: they differ by {seconds:.2f} s, more than "
            f"the {tolerance_s} s tolerance (--tolerance)"
        )
    action = "trimmed" if diff > 0 else (
        "padded by repeating its last frame" if other.name == "video" else "padded by holding its last value"
    )
    return f"{recording_id}: {lengths}; {other.name} {action} ({abs(diff)} frames)"

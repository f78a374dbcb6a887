"""Which training example comes when: every window equally often over a run, exactly resumable.

The training examples of a partition are its training windows: ``T``
frames starting every ``H`` frames of each recording (``data.window`` and
``data.hop``; the last window of a recording may be partial), numbered
``0 … N − 1`` in shard order (:func:`enumerate_examples`). They are cut from
the stored windows at read time: a training window lies in one stored window,
or straddles two consecutive ones when the stored windows do not overlap (the
default build), so one dataset built at ``--window 0.2`` serves both
consecutive 5-frame windows and windows ending at every frame.

A run reads one endless stream of examples made of *passes*: pass ``p`` is a
permutation of all ``N`` examples drawn from ``(seed, p)``
(:func:`pass_permutation`). Epoch ``e`` takes the stream's positions
``[e · S · B, (e + 1) · S · B)`` with ``B`` the batch size and ``S`` the
steps per epoch (``training.steps_per_epoch``, or ``N // B`` for "one pass"),
so an epoch that is not a whole number of passes simply continues into the
next pass: over a run every example is visited the same number of times, give
or take one, and a batch holds examples drawn from the whole corpus rather
than the same few seconds of every recording. Everything is a function of
``(seed, position)``, so a resumed run rebuilds exactly the batches it
skipped (:func:`epoch_examples`).

Examples are read by byte offset (:func:`record_offsets` scans a TFRecord
file's record headers), so no shuffle buffer holds the corpus.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import struct
from pathlib import Path

import numpy as np

from emorec.errors import DatasetError
from emorec.windows import valid_frames, window_starts

# TFRecord framing: uint64 length, uint32 masked CRC of the length, data, uint32 masked CRC of the data.
_HEADER = 12
_FOOTER = 4


@functools.lru_cache(maxsize=256)
def _scan(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    offsets, lengths = [], []
    with open(path, "rb") as handle:
        position = 0
        while position < size:
            head = handle.read(_HEADER)
            if len(head) < _HEADER:
                raise DatasetError(f"{path}: truncated record header at byte {position}")
            (length,) = struct.unpack("<Q", head[:8])
            offsets.append(position + _HEADER)
            lengths.append(length)
            position += _HEADER + length + _FOOTER
            if position > size:
                raise DatasetError(f"{path}: record at byte {offsets[-1] - _HEADER} runs past the end of the file")
            handle.seek(position)
    return np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)


def record_offsets(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Byte offsets and lengths of the records' payloads in a TFRecord file (headers only are read).

    Args:
        path: the TFRecord file.

    Returns:
        ``(offsets, lengths)``, int64 arrays with one entry per record.

    Raises:
        DatasetError: a truncated file.
    """
    stat = Path(path).stat()
    return _scan(str(path), stat.st_size, stat.st_mtime_ns)


@dataclasses.dataclass(frozen=True)
class Examples:
    """The training examples of a partition, in shard order (all arrays have one entry per example).

    Example ``e`` is frames ``[offset, offset + T)`` of stored window ``first``
    followed by stored window ``second`` of shard ``shard`` (``second ==
    first`` when it needs only one; frames past the recording's end are padding).
    """

    shard: np.ndarray  # index of the shard (recording)
    first: np.ndarray  # stored window holding the example's first frame
    second: np.ndarray  # the next stored window when the example straddles two, else ``first``
    offset: np.ndarray  # first frame of the example inside ``first``
    start_frame: np.ndarray  # first frame of the example in its recording

    def __len__(self) -> int:
        return len(self.shard)


def enumerate_examples(frames_per_shard, windows_per_shard, stored_window: int, stored_hop: int,
                       window: int, hop: int | None = None) -> Examples:
    """Every training window of a partition and where it lies in the stored windows.

    Args:
        frames_per_shard: each recording's frame count.
        windows_per_shard: each shard's stored window count (checked against the arithmetic).
        stored_window: frames per stored window ``W``.
        stored_hop: frames between stored window starts.
        window: the training window ``T`` (``T <= W``).
        hop: frames between training windows (default ``T``).

    Returns:
        The :class:`Examples`.

    Raises:
        DatasetError: a shard whose window count does not match its frame count, or training windows
            the stored ones cannot give (longer than ``W``, or across overlapping stored windows).

    >>> e = enumerate_examples([12], [2], stored_window=6, stored_hop=6, window=4)
    >>> e.start_frame.tolist(), e.first.tolist(), e.second.tolist(), e.offset.tolist()
    ([0, 4, 8], [0, 0, 1], [0, 1, 1], [0, 4, 2])
    >>> enumerate_examples([7], [2], 5, 5, window=5, hop=1).start_frame.tolist()  # ending at frames 4, 5, 6
    [0, 1, 2]
    """
    hop = window if hop is None else hop
    if window > stored_window:
        raise DatasetError(f"training windows of {window} frames are longer than the stored ones ({stored_window})")
    parts = []
    for shard, (total, stored) in enumerate(zip(frames_per_shard, windows_per_shard)):
        stored_starts = window_starts(int(total), stored_window, stored_hop)
        if len(stored_starts) != int(stored):
            raise DatasetError(f"shard {shard}: {stored} stored windows, {total} frames need {len(stored_starts)}")
        for start in window_starts(int(total), window, hop):
            first = min(start // stored_hop, len(stored_starts) - 1)
            offset = start - stored_starts[first]
            second = first
            if offset + window > stored_window and valid_frames(int(total), start, window) > stored_window - offset:
                if stored_hop != stored_window:
                    raise DatasetError(
                        f"training windows of {window} frames every {hop} cross the overlapping stored windows "
                        f"({stored_window} frames every {stored_hop}); build the dataset without --hop")
                second = first + 1
            parts.append((shard, first, second, offset, start))
    table = np.asarray(parts, np.int64).reshape(-1, 5)
    return Examples(*(table[:, k] for k in range(5)))


def pass_permutation(seed: int, pass_index: int, n: int) -> np.ndarray:
    """Pass ``pass_index``'s order of the ``n`` examples: a permutation drawn from ``(seed, pass)``.

    Each pass over the examples gets its own stateless permutation, so any position of the
    example stream can be recomputed (resuming mid-epoch, several workers).

    Args:
        seed: the run's seed.
        pass_index: 0-based number of the pass over all examples.
        n: number of examples.

    Returns:
        The ``(n,)`` int64 permutation of ``0 .. n - 1``.

    >>> sorted(pass_permutation(0, 3, 5).tolist())
    [0, 1, 2, 3, 4]
    >>> pass_permutation(0, 3, 5).tolist() == pass_permutation(0, 3, 5).tolist()
    True
    """
    return np.random.default_rng([int(seed), int(pass_index), 0x5EED]).permutation(n)


def steps_in_epoch(n: int, batch_size: int, steps_per_epoch: int | None) -> int:
    """Batches per epoch: ``steps_per_epoch``, or the whole batches of one pass.

    Args:
        n: examples in the partition.
        batch_size: examples per batch.
        steps_per_epoch: the configured batches per epoch; None or 0 means one pass.

    Returns:
        The number of batches per epoch.

    >>> steps_in_epoch(14, 4, None), steps_in_epoch(14, 4, 10)
    (3, 10)
    """
    return int(steps_per_epoch) if steps_per_epoch else n // batch_size


def epoch_examples(n: int, seed: int, batch_size: int, steps: int, epoch: int, skip: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The examples of epoch ``epoch``'s batches ``skip …`` and their stream positions.

    Args:
        n: examples in the partition.
        seed: the run's seed.
        batch_size: examples per batch.
        steps: batches per epoch (:func:`steps_in_epoch`).
        epoch: 0-based epoch.
        skip: batches of the epoch already trained on.

    Returns:
        ``(example ids, positions)``, each ``(steps - skip) * batch_size`` long, in order.

    >>> ids, positions = epoch_examples(5, seed=0, batch_size=2, steps=3, epoch=1)
    >>> positions.tolist()
    [6, 7, 8, 9, 10, 11]
    >>> sorted(ids[:4].tolist()) == sorted(pass_permutation(0, 1, 5)[1:5].tolist())
    True
    """
    first = (epoch * steps + skip) * batch_size
    positions = np.arange(first, (epoch + 1) * steps * batch_size, dtype=np.int64)
    ids = np.empty(len(positions), np.int64)
    passes = positions // n
    for p in np.unique(passes):
        chosen = passes == p
        ids[chosen] = pass_permutation(seed, int(p), n)[positions[chosen] % n]
    return ids, positions

"""The demo adapter: writes the synthetic demo corpus as real media, then reads its CSV.

The media go to ``OUT/.cache/demo_media/seed<SEED>`` unless another folder is
given; a folder that already holds ``recordings.csv`` (written last, atomically)
is reused as it is, so a rerun does not write the media again.
"""

from __future__ import annotations

from pathlib import Path

from emorec.corpus.adapters.manifest_csv import read_recordings_csv
from emorec.recording import RecordingSource

CSV_NAME = "recordings.csv"


def default_media_dir(out_dir, seed: int = 0) -> Path:
    """Where ``build demo OUT`` keeps the demo media by default.

    Args:
        out_dir: the dataset directory being built.
        seed: the demo corpus seed (each seed gets its own folder).

    Returns:
        ``OUT/.cache/demo_media/seed<SEED>`` (not created here).

    >>> default_media_dir("out", 3).as_posix()
    'out/.cache/demo_media/seed3'
    """
    return Path(out_dir) / ".cache" / "demo_media" / f"seed{seed}"


def demo_sources(media_dir, seed: int = 0, progress: bool = True, jobs: int = 1) -> list[RecordingSource]:
    """Write (or reuse) the demo media in ``media_dir`` and return its recordings.

    A folder that already holds ``recordings.csv`` is read as it is.

    Args:
        media_dir: the folder for the demo wav/mp4/label files (created if missing).
        seed: the seed of the synthetic corpus (same seed, same media).
        progress: show a progress bar while writing the media.
        jobs: number of processes writing recordings in parallel.

    Returns:
        The recordings listed in ``media_dir/recordings.csv``, sorted by (partition, id).

    Raises:
        EmorecError: the media cannot be written or the CSV cannot be read (see
            :func:`~emorec.corpus.adapters.manifest_csv.read_recordings_csv`).
    """
    media_dir = Path(media_dir)
    csv_path = media_dir / CSV_NAME
    if not csv_path.is_file():
        from emorec.demo import write_demo_media

        csv_path = Path(write_demo_media(media_dir, seed=seed, progress=progress, jobs=jobs))
    return read_recordings_csv(csv_path)

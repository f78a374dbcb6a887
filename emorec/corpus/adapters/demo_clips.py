"""The demo clip adapter: writes the synthetic clip corpus (AFEW layout + clips.csv), then reads its CSV.

The CSV carries the demo's subject ids, which the AFEW layout cannot; the
same media can also be read with the AFEW adapter. A folder that already
holds ``clips.csv`` (written last, atomically) is reused as it is.
"""

from __future__ import annotations

from pathlib import Path

from emorec.clips.source import ClipSource
from emorec.corpus.adapters.clips_csv import read_clips_csv


def default_clip_media_dir(out_dir, seed: int = 0) -> Path:
    """Where a demo clip build into ``out_dir`` keeps the demo media by default.

    Args:
        out_dir: the clip dataset's output directory.
        seed: the demo's random seed.

    Returns:
        ``out_dir/.cache/demo_clip_media/seed<seed>``.

    >>> default_clip_media_dir("out", 3).as_posix()
    'out/.cache/demo_clip_media/seed3'
    """
    return Path(out_dir) / ".cache" / "demo_clip_media" / f"seed{seed}"


def demo_clip_sources(media_dir, *, spec=None, seed: int = 0, jobs: int = 1,
                      progress: bool = True) -> list[ClipSource]:
    """Write (or reuse) the demo clips in ``media_dir`` and return them as clip sources.

    Args:
        media_dir: folder of the demo corpus.
        spec: :class:`emorec.demo.clips.ClipSpec` (default: its defaults).
        seed: the corpus seed.
        jobs: processes writing the media.
        progress: show a progress bar while writing.

    Returns:
        The clips, with the spec's classes and the demo's subjects.
    """
    from emorec.demo.clips import CLIPS_CSV, ClipSpec, write_demo_clips

    spec = spec or ClipSpec()
    media_dir = Path(media_dir)
    csv_path = media_dir / CLIPS_CSV
    if not csv_path.is_file():
        csv_path = write_demo_clips(media_dir, spec=spec, seed=seed, jobs=jobs, progress=progress)
    return read_clips_csv(csv_path, classes=spec.classes)

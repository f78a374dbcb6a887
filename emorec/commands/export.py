"""``emorec export RUN OUT``: a training run's best model as a SavedModel for serving (see :mod:`emorec.export`).

Clip classification runs (``emotiw*``) export a clip's faces and sound →
class probabilities (:mod:`emorec.clip_export`).
"""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = "Export a training run's best model (SavedModel with offline and streaming signatures)."


def add_arguments(parser) -> None:
    """The ``export`` options."""
    parser.add_argument("run_dir", type=Path, help="training run directory (best.keras, config.yaml)")
    parser.add_argument("out_dir", type=Path, help="export directory to write")
    parser.add_argument("--no-streaming", action="store_true", help="skip the streaming SavedModel")


def run(args) -> int:
    """Export and say what was written."""
    from emorec.clip_evaluate import is_clip_run
    from emorec.export import export_run

    if is_clip_run(args.run_dir):
        from emorec.clip_export import export_clip_run

        info = export_clip_run(args.run_dir, args.out_dir)
        print(f"exported {info['model']} (a clip's faces and sound -> {len(info['classes'])} class "
              f"probabilities; faces of {info['face_size']} pixels, sound at {info['sample_rate']} Hz) "
              f"to {args.out_dir}")
        return 0
    info = export_run(args.run_dir, args.out_dir, streaming=not args.no_streaming)
    stream = info["streaming"]
    print(f"exported {info['model']} ({', '.join(info['inputs'])}) to {args.out_dir}"
          + (f"; streaming state {stream['state_shape']}" if stream else "; no streaming form"))
    return 0

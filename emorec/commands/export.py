"""``emorec export RUN OUT [--format savedmodel onnx litert]``: a training run's best model for serving.

    emorec export runs/av exports/av                                   # SavedModel
    emorec export runs/av exports/av --format savedmodel onnx litert   # all three

See :mod:`emorec.export` for the layout and :mod:`emorec.export_formats` for the
ONNX and LiteRT conversions.

Clip classification runs (``emotiw*``) export a clip's faces and sound →
class probabilities as a SavedModel (:mod:`emorec.clip_export`).
"""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = "Export a training run's best model (SavedModel, ONNX, LiteRT; offline and streaming)."
FORMAT_CHOICES = ("savedmodel", "onnx", "litert")  # emorec.export_formats.FORMATS, without importing it


def add_arguments(parser) -> None:
    """Add the ``export`` positional arguments and options to ``parser``.

    Args:
        parser: the :class:`argparse.ArgumentParser` of the ``export`` subcommand (or of
            ``python -m emorec.export``); changed in place.
    """
    parser.add_argument("run_dir", type=Path, help="training run directory (best.keras, config.yaml)")
    parser.add_argument("out_dir", type=Path, help="export directory to write")
    parser.add_argument("--format", dest="formats", nargs="+", choices=FORMAT_CHOICES, default=["savedmodel"],
                        metavar="FORMAT",
                        help="one or more of savedmodel (default), onnx (needs emorec[onnx]), "
                             "litert (needs emorec[litert])")
    parser.add_argument("--no-streaming", action="store_true", help="skip the streaming forms")


def run(args) -> int:
    """Export the run's best model and print what was written, with each format's check.

    Args:
        args: the :class:`argparse.Namespace` parsed with :func:`add_arguments`'s options
            (``run_dir``, ``out_dir``, ``formats``, ``no_streaming``).

    Returns:
        The exit status, 0 (failures raise instead).

    Raises:
        EmorecError: an unusable run directory, an unknown or unavailable format, or an output
            directory that cannot be written (from :func:`emorec.export.export_run`).
    """
    from emorec.clip_evaluate import is_clip_run
    from emorec.export import export_run

    if is_clip_run(args.run_dir):
        from emorec.clip_export import export_clip_run
        from emorec.errors import ConfigError

        if list(args.formats) != ["savedmodel"] or args.no_streaming:
            raise ConfigError(f"{args.run_dir}: a clip classification run exports as a SavedModel only "
                              "(no --format onnx/litert, no --no-streaming)")
        info = export_clip_run(args.run_dir, args.out_dir)
        print(f"exported {info['model']} (a clip's faces and sound -> {len(info['classes'])} class "
              f"probabilities; faces of {info['face_size']} pixels, sound at {info['sample_rate']} Hz) "
              f"to {args.out_dir}")
        return 0
    info = export_run(args.run_dir, args.out_dir, streaming=not args.no_streaming, formats=args.formats)
    stream = info["streaming"]
    print(f"exported {info['model']} ({', '.join(info['inputs'])}) to {args.out_dir}"
          + (f"; streaming state {stream['state_shape']}" if stream else "; no streaming form"))
    for name, entry in info["formats"].items():
        diff = entry["check_max_abs_diff"]
        files = [entry["folder"]] if "folder" in entry else [
            part["file"] for part in (entry["offline"], entry["streaming"]) if part]
        streamed = "" if diff["streaming"] is None else f", streaming {diff['streaming']:.1e}"
        print(f"  {name}: {', '.join(files)} (max abs difference from Keras: offline {diff['offline']:.1e}"
              f"{streamed})")
    return 0

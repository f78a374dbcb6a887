"""``emorec predict EXPORT media --out preds.csv``: arousal and valence every 40 ms of a new wav or mp4.

    emorec predict export/ talk.mp4 --out talk.csv --plot talk.png
    emorec predict export/ talk.wav --out talk.csv --stream --chunk-frames 25
    emorec predict export/ talk.mp4 --out talk.csv --postprocess
    emorec predict export/ talk.mp4 --out talk.csv --window train
    emorec predict export/ talk.wav --out talk.csv --runtime litert --index file-start-end

See :mod:`emorec.predict` for the frame pipeline and the output format.
With a clip classification export (``emotiw*``), ``emorec predict EXPORT clip.avi``
prints the clip's class and writes its probabilities (``--out``, default
``<clip>_emotion.csv``, and the ``.json`` beside it; :mod:`emorec.clip_predict`).
"""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = ("Predict arousal and valence every 40 ms of a new wav or mp4, or the emotion of a clip, "
               "with an exported model.")
RUNTIME_CHOICES = ("savedmodel", "onnx", "litert")  # emorec.runtimes.RUNTIMES, without importing it
INDEX_CHOICES = ("time", "file-start-end")  # emorec.predict.INDEX_CHOICES
WINDOW_CHOICES = ("whole", "train")  # emorec.predict.WINDOW_CHOICES


def add_arguments(parser) -> None:
    """Add the ``predict`` positional arguments and options to ``parser``.

    Args:
        parser: the :class:`argparse.ArgumentParser` of the ``predict`` subcommand (or of
            ``python -m emorec.predict``); changed in place.
    """
    parser.add_argument("export_dir", type=Path, help="directory written by emorec export")
    parser.add_argument("media", type=Path, help="a wav (audio models) or mp4 file")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV to write (see --index); required for arousal/valence; clip exports: "
                             "class, probability (default <clip>_emotion.csv)")
    parser.add_argument("--index", choices=INDEX_CHOICES, default="time",
                        help="time: columns time,arousal,valence (default); file-start-end: "
                             "file,start,end,arousal,valence (seconds; audinterface/audformat convention)")
    parser.add_argument("--plot", type=Path, default=None, help="also write a PNG of the predictions")
    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default=None,
                        help="format to run: savedmodel (TensorFlow; default when exported), onnx "
                             "(onnxruntime), litert (LiteRT interpreter)")
    parser.add_argument("--stream", action="store_true", help="run chunk by chunk through the streaming model")
    parser.add_argument("--chunk-frames", type=int, default=None,
                        help="frames per model call, state carried over (default 750 = 30 s); "
                             "the predictions do not depend on it")
    parser.add_argument("--window", choices=WINDOW_CHOICES, default=None,
                        help="whole: the recording as one sequence (default); train: the training "
                             "window from a zero state, as emorec evaluate scores (sliding and scored on "
                             "the last frame for ae_lstm)")
    parser.add_argument("--postprocess", action="store_true",
                        help="apply the export's tuned AVEC chain, predicting the way it was tuned")
    parser.add_argument("--cache-dir", type=Path, default=None, help="face-track cache directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    """Check the outputs can be written, predict, write the CSV (and the plot), say how many frames.

    Args:
        args: the :class:`argparse.Namespace` parsed with :func:`add_arguments`'s options
            (``export_dir``, ``media``, ``out``, ``index``, ``plot``, ``runtime``, ``stream``,
            ``chunk_frames``, ``window``, ``postprocess``, ``cache_dir``, ``no_progress``).

    Returns:
        The exit status, 0 (failures raise instead).

    Raises:
        ConfigError: the plot cannot be written.
        EmorecError: an output that cannot be written, or an unusable export, medium or
            option (from :func:`emorec.predict.predict_media` and :mod:`emorec.outputs`).
    """
    from emorec.commands.build import progress
    from emorec.errors import ConfigError
    from emorec.outputs import check_output_file, write_output_file
    from emorec.predict import predict_media, prediction_table, read_export_info, table_csv_bytes

    # Outputs first: an unwritable --out must not cost a look at the export or the media.
    if args.out is not None:
        check_output_file(args.out, "the predictions")
    if read_export_info(args.export_dir).get("task") == "clip_classification":
        return _predict_clip(args)
    if args.out is None:
        raise ConfigError(f"{args.export_dir}: --out FILE.csv is required for arousal/valence predictions")
    if args.plot is not None:
        check_output_file(args.plot, "the plot")
    result = predict_media(
        args.export_dir, args.media, stream=args.stream, chunk_frames=args.chunk_frames,
        window=args.window, postprocess=args.postprocess, runtime=args.runtime, cache_dir=args.cache_dir, progress=progress(args),
    )
    table = prediction_table(result, args.media, args.index)
    write_output_file(args.out, table_csv_bytes(table), "the predictions")
    if args.plot is not None:
        from emorec.plots import plot_recording

        try:
            plot_recording(args.plot, result["times"], result["predictions"],
                           title=f"{args.media.name} ({result['info']['model']})")
        except OSError as exc:
            raise ConfigError(f"{args.plot}: cannot write the plot ({exc.strerror or exc})") from None
    print(f"{len(result['times'])} frames of {args.media} -> {args.out} ({result['runtime']}, {result['mode']})")
    return 0


def _predict_clip(args) -> int:
    """Classify a clip with a clip export; print its class, write the probabilities (CSV and JSON)."""
    from emorec.clip_predict import default_output, predict_clip, write_clip_prediction
    from emorec.commands.build import progress
    from emorec.errors import ConfigError

    if (args.stream or args.postprocess or args.plot is not None or args.window is not None
            or args.index != "time" or args.runtime not in (None, "savedmodel")):
        raise ConfigError(f"{args.export_dir}: --stream, --postprocess, --plot, --window, --index and "
                          "--runtime onnx/litert apply to arousal/valence exports, not to clip classification")
    result = predict_clip(args.export_dir, args.media, cache_dir=args.cache_dir, progress=progress(args))
    csv_path, json_path = write_clip_prediction(result, args.out or default_output(args.media))
    probability = result["probabilities"][result["class"]]
    print(f"{args.media}: {result['class']} (probability {probability:.3f}; {result['faces_found']} of "
          f"{result['frames']} frames with a face{'' if result['has_audio'] else ', no sound track'}) "
          f"-> {csv_path}, {json_path}")
    return 0

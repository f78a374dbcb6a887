"""``emorec predict EXPORT media --out preds.csv``: arousal and valence every 40 ms of a new wav or mp4.

    emorec predict export/ talk.mp4 --out talk.csv --plot talk.png
    emorec predict export/ talk.wav --out talk.csv --stream --chunk-frames 25
    emorec predict export/ talk.mp4 --out talk.csv --postprocess

See :mod:`emorec.predict` for the frame pipeline and the output format.
With a clip classification export (``emotiw*``), ``emorec predict EXPORT clip.avi``
prints the clip's class and writes its probabilities (``--out``, default
``<clip>_emotion.csv``, and the ``.json`` beside it; :mod:`emorec.clip_predict`).
"""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = "Predict arousal and valence every 40 ms of a new wav or mp4 with an exported model."


def add_arguments(parser) -> None:
    """The ``predict`` options."""
    parser.add_argument("export_dir", type=Path, help="directory written by emorec export")
    parser.add_argument("media", type=Path, help="a wav (audio models) or mp4 file")
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV to write (time, arousal, valence; clip exports: class, probability, "
                             "default <clip>_emotion.csv); required for arousal/valence")
    parser.add_argument("--plot", type=Path, default=None, help="also write a PNG of the predictions")
    parser.add_argument("--stream", action="store_true", help="run chunk by chunk through the streaming model")
    parser.add_argument("--chunk-frames", type=int, default=None,
                        help="frames per chunk with --stream (default 750 = 30 s)")
    parser.add_argument("--postprocess", action="store_true", help="apply the export's tuned AVEC chain")
    parser.add_argument("--cache-dir", type=Path, default=None, help="face-track cache directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    """Predict, write the CSV (and the plot) and say how many frames."""
    from emorec.commands.build import progress
    from emorec.errors import ConfigError
    from emorec.evaluate import write_predictions_csv
    from emorec.predict import predict_media, read_export_info

    if read_export_info(args.export_dir).get("task") == "clip_classification":
        return _predict_clip(args)
    if args.out is None:
        raise ConfigError(f"{args.export_dir}: --out FILE.csv is required for arousal/valence predictions")
    result = predict_media(
        args.export_dir, args.media, stream=args.stream, chunk_frames=args.chunk_frames,
        postprocess=args.postprocess, cache_dir=args.cache_dir, progress=progress(args),
    )
    write_predictions_csv(args.out, result["times"], result["predictions"], with_gold=False)
    if args.plot is not None:
        from emorec.plots import plot_recording

        plot_recording(args.plot, result["times"], result["predictions"],
                       title=f"{args.media.name} ({result['info']['model']})")
    print(f"{len(result['times'])} frames of {args.media} -> {args.out}")
    return 0


def _predict_clip(args) -> int:
    """Classify a clip with a clip export; print its class, write the probabilities (CSV and JSON)."""
    from emorec.clip_predict import default_output, predict_clip, write_clip_prediction
    from emorec.commands.build import progress
    from emorec.errors import ConfigError

    if args.stream or args.postprocess or args.plot is not None:
        raise ConfigError(f"{args.export_dir}: --stream, --postprocess and --plot apply to arousal/valence "
                          "exports, not to clip classification")
    result = predict_clip(args.export_dir, args.media, cache_dir=args.cache_dir, progress=progress(args))
    csv_path, json_path = write_clip_prediction(result, args.out or default_output(args.media))
    probability = result["probabilities"][result["class"]]
    print(f"{args.media}: {result['class']} (probability {probability:.3f}; {result['faces_found']} of "
          f"{result['frames']} frames with a face{'' if result['has_audio'] else ', no sound track'}) "
          f"-> {csv_path}, {json_path}")
    return 0

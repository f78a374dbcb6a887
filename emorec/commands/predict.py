"""``emorec predict EXPORT media --out preds.csv``: arousal and valence every 40 ms of a new wav or mp4.

    emorec predict export/ talk.mp4 --out talk.csv --plot talk.png
    emorec predict export/ talk.wav --out talk.csv --stream --chunk-frames 25
    emorec predict export/ talk.mp4 --out talk.csv --postprocess

See :mod:`emorec.predict` for the frame pipeline and the output format.
"""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = "Predict arousal and valence every 40 ms of a new wav or mp4 with an exported model."


def add_arguments(parser) -> None:
    """The ``predict`` options."""
    parser.add_argument("export_dir", type=Path, help="directory written by emorec export")
    parser.add_argument("media", type=Path, help="a wav (audio models) or mp4 file")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write (time, arousal, valence)")
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
    from emorec.evaluate import write_predictions_csv
    from emorec.predict import predict_media

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

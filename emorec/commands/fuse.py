"""``emorec fuse RUN RUN... --data D --out FUSED``: late fusion of several runs (Chen & Jin §5.7).

    emorec fuse runs/audio_mse_cov runs/geo_ccc runs/app_mse --data data/recola --out runs/fused
    emorec fuse RUN... --data D --out FUSED --split whole        # fit and score on the entire dev

Each run's best model predicts dev (and test) as its protocol evaluates; its
predictions are smoothed (exponential smoothing, α tuned on the fitting dev
recordings); per dimension a linear regression of the gold standard on the
runs' smoothed predictions gives the weights. --split paper (default): the dev
recordings in id order, all but the last fit, the last evaluates; --split
whole: all of dev does both. The weights are applied unchanged to test.
"""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = "Late fusion of several runs: linear regression of their (smoothed) dev predictions."
EPILOG = """\
writes FUSED/fusion.json (runs, smoothing, weights, metrics), FUSED/fusion.md (the metrics as
the paper's Table 10), FUSED/predictions/<partition>/<recording>.csv, and the fused predictor
FUSED/fused.keras + FUSED/export/ (SavedModel; inputs as the runs', outputs arousal, valence).
"""


def add_arguments(parser) -> None:
    """The ``fuse`` options.

    Args:
        parser: the :class:`argparse.ArgumentParser` of the ``fuse`` subcommand; changed in place.
    """
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="training run directories (two or more)")
    parser.add_argument("--data", type=Path, required=True, help="the dataset the runs were trained on")
    parser.add_argument("--out", type=Path, required=True, help="the fusion directory")
    parser.add_argument("--split", choices=("paper", "whole"), default="paper",
                        help="paper: all dev recordings but the last fit, the last evaluates (default); "
                             "whole: the entire dev fits and evaluates")
    parser.add_argument("--fit-recordings", type=int, default=None, metavar="K",
                        help="with --split paper: the first K dev recordings (id order) fit the weights")
    parser.add_argument("--no-smoothing", action="store_true", help="fuse the raw predictions")
    parser.add_argument("--protocol", type=Path, default=None,
                        help="evaluation protocol (default: the first run's task's, evaluate/avec2015.yaml)")
    parser.add_argument("--no-export", action="store_true", help="do not write the fused predictor")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    """Fuse; prints the table and where everything is.

    Args:
        args: the parsed ``fuse`` arguments (:func:`add_arguments`).

    Returns:
        The exit status, 0 (failures raise instead).

    Raises:
        EmorecError: unusable runs, dataset, protocol or settings (from
            :func:`emorec.fusion.fuse_runs`).
    """
    from emorec.commands.build import progress
    from emorec.fusion import format_table, fuse_runs
    from emorec.rundir import FusionDir

    info = fuse_runs(args.runs, args.data, args.out, split=args.split, fit_recordings=args.fit_recordings,
                     smoothing=not args.no_smoothing, protocol=args.protocol, export=not args.no_export,
                     progress=progress(args))
    out = FusionDir(args.out)
    print(format_table(info))
    print(f"fusion: {out.info} (weights, smoothing, metrics), predictions in {out.path / out.PREDICTIONS}")
    if info["exported"]:
        print(f"fused predictor: {info['exported']['keras_model']}, {info['exported']['saved_model']}")
    return 0

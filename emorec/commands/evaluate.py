"""``emorec evaluate RUN --data D --partition dev|test``: score a run's best model on whole recordings, AVEC style.

    emorec evaluate RUN_DIR --data DIR --partition dev --postprocess tune
    emorec evaluate RUN_DIR --data DIR --partition test --postprocess apply

See :mod:`emorec.evaluate` for the evaluation window, the post-processing
modes and what is written. A clip classification run (``emotiw*``) is
evaluated by :mod:`emorec.clip_evaluate` (Table 2's rows, confusion matrices,
per-class recall, UAR, a label file; ``evaluate/emotiw2017.yaml``).
"""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = ("Score a training run's best model: arousal/valence per recording (AVEC 2016 or 2015), "
               "or one emotion per clip (EmotiW 2017).")


def add_arguments(parser) -> None:
    """Add the ``evaluate`` positional argument and options to ``parser``.

    Args:
        parser: the :class:`argparse.ArgumentParser` of the ``evaluate`` subcommand (or of
            ``python -m emorec.evaluate``); changed in place.
    """
    from emorec.evaluate import POSTPROCESS_MODES

    parser.add_argument("run_dir", type=Path, help="training run directory (holds best.keras, config.yaml)")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (manifest.json)")
    parser.add_argument("--partition", required=True, choices=("train", "dev", "test"))
    parser.add_argument("--postprocess", choices=POSTPROCESS_MODES, default="off",
                        help="tune (dev: choose and store in RUN_DIR/postprocess.json), apply (stored), off")
    parser.add_argument("--eval-window", default=None,
                        help="train (the run's training windows, zero state each), whole, or seconds "
                             "(default: the protocol's inference.eval_window: train for AVEC 2016, "
                             "whole for AVEC 2015)")
    parser.add_argument("--chunk-frames", type=int, default=None,
                        help="frames per chunk in whole-recording mode (state carried over)")
    parser.add_argument("--protocol", type=Path, default=None,
                        help="protocol YAML (default: the model's task's: evaluate/avec2016.yaml, "
                             "evaluate/avec2015.yaml for feature_lstm, evaluate/emotiw2017.yaml for emotiw*)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default RUN_DIR/eval/PARTITION)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def summary(result: dict) -> str:
    """The lines printed after an evaluation: CCC, CC and RMSE per dimension, raw and post-processed
    (the columns of Chen & Jin's tables).

    Args:
        result: the dict returned by :func:`emorec.evaluate.evaluate_run` (``model``,
            ``partition``, ``num_recordings``, ``eval_window``, ``raw``, optional
            ``postprocessed`` and ``note``, ``out_dir``).

    Returns:
        The summary text, one line per dimension and stage, without a final newline.
    """
    lines = [f"{result['model']} on {result['partition']} ({result['num_recordings']} recordings, "
             f"eval window {result['eval_window']['mode']})"]
    for key in ("raw", "postprocessed"):
        metrics = result.get(key)
        if metrics:
            for name in ("arousal", "valence"):
                m = metrics.get(name)
                if m:
                    cc = f", CC {m['pearson']}" if "pearson" in m else ""
                    lines.append(f"  {key:13s} {name:8s} CCC {m['ccc']} (per-recording mean "
                                 f"{m.get('ccc_per_recording_mean')}){cc}, RMSE {m.get('rmse')}")
    if result.get("note"):
        lines.append(f"  {result['note']}")
    lines.append(f"outputs: {result['out_dir']}")
    return "\n".join(lines)


def run(args) -> int:
    """Evaluate the run's best model on a partition and print the summary.

    Args:
        args: the :class:`argparse.Namespace` parsed with :func:`add_arguments`'s options
            (``run_dir``, ``data``, ``partition``, ``postprocess``, ``eval_window``,
            ``chunk_frames``, ``protocol``, ``out``, ``no_plots``, ``no_progress``).

    Returns:
        The exit status, 0 (failures raise instead).

    Raises:
        EmorecError: the run, dataset or settings are unusable (from
            :func:`emorec.evaluate.evaluate_run`); the CLI exits with status 2.
    """
    from emorec.clip_evaluate import is_clip_run
    from emorec.commands.build import progress
    from emorec.evaluate import evaluate_run

    if is_clip_run(args.run_dir):
        return _evaluate_clips(args)
    result = evaluate_run(
        args.run_dir, args.data, args.partition, args.postprocess, out_dir=args.out,
        eval_window=args.eval_window, chunk_frames=args.chunk_frames, protocol=args.protocol,
        plots=not args.no_plots, progress=progress(args),
    )
    print(summary(result))
    return 0


def _evaluate_clips(args) -> int:
    """A clip classification run: :func:`emorec.clip_evaluate.evaluate_clip_run` and its summary."""
    from emorec.clip_evaluate import evaluate_clip_run, format_evaluation
    from emorec.commands.build import progress
    from emorec.errors import ConfigError

    if args.postprocess != "off" or args.eval_window is not None or args.chunk_frames is not None:
        raise ConfigError(f"{args.run_dir}: --postprocess, --eval-window and --chunk-frames apply to the "
                          "frame regression models, not to clip classification runs")
    result = evaluate_clip_run(args.run_dir, args.data, args.partition, out_dir=args.out, protocol=args.protocol,
                               plots=not args.no_plots, progress=progress(args))
    print(format_evaluation(result))
    return 0

"""``emorec train --model NAME``: train a registered model with its paper settings from ``train/NAME.yaml``.

    emorec train --model e2e_audio                       # embedded demo corpus and the demo flow
    emorec train --model e2e_audio --data data/recola --out runs/audio
    emorec train --model e2e_audio --data D --resume --out runs/audio
    emorec train --model e2e_av --data D --strategy mirrored --set data.batch_size=8
    emorec train --model emotiw --data clips/ --out runs/emotiw          # Pini et al.: all phases
    emorec train --model emotiw --data clips/ --branches F,C,A --out runs/fusion
    emorec train --model emotiw_frame --data clips/ --folds 5 --out runs/frame5

Without ``--data`` the run uses the embedded demo corpus (built on first use)
and merges the YAML's ``demo:`` overrides, then runs the demo flow
(:mod:`emorec.demo_flow`). ``--epochs`` and ``--steps`` are alternatives:
``--steps N`` stops after N steps in all. The resolved config is saved as
``RUN_DIR/config.yaml``; see docs/training.md for the run directory.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

DESCRIPTION = "Train a registered model with its paper settings (train/NAME.yaml)."
EPILOG = """\
without --data (the demo flow, any model):
  1. build the embedded demo corpus (synthetic speakers and drawn faces, real wav/mp4
     files) at the YAML's data.window into $EMOREC_CACHE/demo/<window>s, default
     ~/.cache/emorec/demo/<window>s; a complete cached build is reused, a broken one rebuilt;
  2. train with the YAML's `demo:` overrides (a short schedule) into --out;
  3. evaluate the best model on the demo dev partition: RUN_DIR/eval/dev/metrics.json,
     raw metrics and, apart, after the AVEC post-processing tuned on dev;
  4. export the SavedModel (offline and streaming signatures) into RUN_DIR/export;
  5. draw RUN_DIR/learning_curves.png and, for models with a face decoder,
     RUN_DIR/reconstructions.png;
  then print where everything is and the dev CCC and RMSE (E_a, E_v, E_av) per dimension.
with --data: training only (emorec evaluate and emorec export do the rest).
clip models (emotiw_frame, emotiw_c3d, emotiw_audio, emotiw; docs/emotiw.md): --data is a clip
dataset (emorec build afew|clips); `--model emotiw` without --branches trains the three branches
into RUN/frame, RUN/c3d, RUN/audio with their own YAMLs, then the fusion into RUN (--set frame.KEY=V,
c3d.KEY=V, audio.KEY=V reach the branch phases; --seed, --strategy, --jit every phase; --epochs,
--steps, --batch-size the model itself); --folds K trains K times on Pini et al.'s folds into
RUN/fold1..K and writes RUN/folds.json (mean and sd). Without --data: the embedded demo clips,
all phases, dev evaluation with confusion matrices, export.
"""

logger = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    """The ``train`` options.

    Args:
        parser: the :class:`argparse.ArgumentParser` of the ``train`` subcommand; changed in place.
    """
    from emorec.config import STRATEGIES

    parser.add_argument("--model", required=True, help="registered model name (see train/*.yaml)")
    parser.add_argument("--data", type=Path,
                        help="dataset directory (default: the embedded demo corpus and the demo flow, below)")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/<model>-<timestamp>)")
    parser.add_argument("--config", type=Path, help="training config (default: train/<model>.yaml)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="number of epochs (training.epochs)")
    length.add_argument("--steps", type=int, help="stop after this many steps in all (training.max_steps)")
    parser.add_argument("--batch-size", type=int, help="global batch size (data.batch_size)")
    parser.add_argument("--seed", type=int, help="random seed (training.seed)")
    parser.add_argument("--strategy", choices=STRATEGIES, help="tf.distribute strategy (training.strategy)")
    parser.add_argument("--jit", choices=("auto", "true", "false", "update"),
                        help="XLA-compile the training and validation steps (true), only the optimizer's "
                             "update (update) or nothing (false) (training.jit_compile; auto = the "
                             "model's measured choice)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/latest")
    parser.add_argument("--stateful", action="store_true", default=None,
                        help="carry the LSTM state across consecutive windows of a recording "
                             "(training.stateful and data.stream_ordered; see docs/training.md)")
    parser.add_argument("--features", metavar="NAMES",
                        help="feature sets the model reads, e.g. audio_lld,video_geometric (model.features; "
                             "feature_lstm: default every set the dataset holds)")
    parser.add_argument("--loss", metavar="NAME",
                        help="the loss (loss.name; feature_lstm: mse, mae, tube, ccc, mse_cov, mse_cc)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any setting, e.g. --set optimizer.learning_rate=3e-4 (repeatable)")
    parser.add_argument("--branches", metavar="FRAME_RUN,C3D_RUN,AUDIO_RUN",
                        help="emotiw: train the fusion on these branch runs (default: train them first)")
    parser.add_argument("--folds", type=int, metavar="K",
                        help="clip models: K-fold cross-validation on the validation partition (Pini et al.)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _flags(args) -> list[tuple[str, object, str]]:
    """``(dotted key, value, flag)`` of the dedicated flags that were given."""
    flags = []
    if args.epochs is not None:
        flags.append(("training.epochs", args.epochs, "--epochs"))
    if args.steps is not None:
        # --steps replaces the epoch count: as many epochs as the steps need.
        flags += [("training.max_steps", args.steps, "--steps"), ("training.epochs", None, "--steps")]
    for key, value, flag in (("training.seed", args.seed, "--seed"), ("training.strategy", args.strategy,
                             "--strategy"), ("data.batch_size", args.batch_size, "--batch-size")):
        if value is not None:
            flags.append((key, value, flag))
    if args.stateful:
        flags += [("training.stateful", True, "--stateful"), ("data.stream_ordered", True, "--stateful")]
    if getattr(args, "features", None):
        from emorec.features.sets import parse_set_list

        flags.append(("model.features", list(parse_set_list(args.features, "--features")), "--features"))
    if getattr(args, "loss", None):
        flags.append(("loss.name", args.loss, "--loss"))
    if args.jit is not None:
        value = {"auto": "auto", "true": True, "false": False, "update": "update"}[args.jit]
        flags.append(("training.jit_compile", value, "--jit"))
    return flags


def train_from_args(args, on_step=None):
    """Resolve the config named by parsed ``args`` and train (the demo flow without ``--data``).

    Args:
        args: parsed ``train`` arguments.
        on_step: called after every training step (see :func:`emorec.training.engine.train`).

    Returns:
        The :class:`~emorec.training.engine.TrainResult`, or the
        :class:`~emorec.demo_flow.DemoFlowResult` of the demo flow.
    """
    from emorec.commands.build import progress
    from emorec.config import config_path_for, resolve_config
    from emorec.errors import ConfigError

    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
    demo = args.data is None
    config_file = args.config or config_path_for(args.model)
    clip = _is_clip_model(args.model)
    if not clip and (args.branches or args.folds):
        raise ConfigError(f"--branches and --folds apply to the clip models (emotiw*), not to {args.model}")
    overrides, phase_overrides = list(args.overrides), None
    if clip:
        from emorec.emotiw_flow import split_overrides

        overrides, phase_overrides = split_overrides(overrides)
    config = resolve_config(config_file, demo=demo, overrides=overrides, flags=_flags(args))
    if config.model_name != args.model:
        raise ConfigError(f"{config_file}: model.name is {config.model_name!r} but --model is {args.model!r}")
    from emorec.training.engine import default_run_dir, train

    run_dir = args.out or default_run_dir(args.model)
    run_info = {"demo": demo, "config_file": str(config_file), "command": " ".join(sys.argv)}
    if clip:
        return _train_clip(args, config, run_dir, demo, phase_overrides, on_step, run_info)
    if demo:
        from emorec.demo_flow import run_demo_flow

        return run_demo_flow(config, run_dir, resume=args.resume, progress=progress(args),
                             on_step=on_step, run_info=run_info)
    return train(config, args.data, run_dir, resume=args.resume, progress=progress(args),
                 on_step=on_step, run_info=run_info)


def _is_clip_model(name: str) -> bool:
    from emorec.models import get_model_spec

    return get_model_spec(name).task == "clip_classification"


def _train_clip(args, config, run_dir, demo, phase_overrides, on_step, run_info):
    """The clip models' flows (:mod:`emorec.emotiw_flow`): one model, all phases, k-fold, or the demo."""
    from emorec.commands.build import progress
    from emorec.emotiw_flow import run_clip_demo_flow, train_clip_model

    shared = [f for f in _flags(args) if f[0] in ("training.seed", "training.strategy", "training.jit_compile")]
    kwargs = dict(resume=args.resume, progress=progress(args), on_step=on_step, run_info=run_info,
                  phase_overrides=phase_overrides, phase_flags=shared)
    if demo:
        if args.branches or args.folds:
            from emorec.errors import ConfigError

            raise ConfigError("--branches and --folds need --data (the demo flow trains every phase once)")
        return run_clip_demo_flow(config, run_dir, **kwargs)
    return train_clip_model(config, args.data, run_dir, branches=args.branches, folds=args.folds, **kwargs)


def run(args) -> int:
    """Train; prints where everything is and the best validation score (the demo flow: its summary).

    Args:
        args: the parsed ``train`` arguments (:func:`add_arguments`).

    Returns:
        The exit status, 0 (failures raise instead).

    Raises:
        EmorecError: unusable settings, dataset or run directory.
    """
    result = train_from_args(args)
    if args.data is None:
        print(result.summary, flush=True)
        return 0
    if getattr(result, "summary", None) and getattr(result, "folds", None):
        from emorec.emotiw_flow import format_folds

        print(f"run directory: {args.out or result.run_dir}\n{format_folds(result.summary)}", flush=True)
        return 0
    best = "n/a" if result.best_score is None else f"{result.best_score:.4f}"
    print(f"run directory: {result.run_dir}\nbest {result.score_name}: {best} (epoch {result.best_epoch})\n"
          f"best model: {result.best_model}")
    return 0

"""Training steps with and without XLA, per model, at the YAMLs' shapes (what ``training.jit_compile: auto`` rests on).

    python benchmarks/xla.py                      # e2e_audio, ae_lstm, e2e_video
    python benchmarks/xla.py --models ae_lstm --repeats 5
    python benchmarks/xla.py --quick              # smaller batches, one timed step

For each model: the training engine's own step (``WindowedStep``, the model's
objective, Adam, weight decay) on a random batch of the YAML's batch size and
window, timed plain, with only the optimizer's update compiled
(``jit_compile: update``) and with the whole step compiled (``true``); the
first call (tracing and, with XLA, compiling) is reported apart. A model is
registered with ``xla=True`` or ``xla="update"`` (what ``auto`` compiles) when
this benchmark shows that faster *and* tests/test_xla.py shows it exact.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import keras  # noqa: E402

from emorec.models import build_model, get_model_spec  # noqa: E402

MODELS = ("e2e_audio", "ae_lstm", "e2e_video")
MODES = (False, "update", True)
HEADERS = ["model", "batch", "plain s/step", "update s/step", "step s/step", "update speed-up", "step speed-up",
           "windows/s plain / update / step", "first call plain / update / step (s)", "auto compiles"]


def main(argv=None) -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="batch 4, one timed step")
    args = parser.parse_args(argv)
    print(_common.machine_description())
    rows = []
    for name in args.models.split(","):
        config = _common.load_train_config(name)
        if args.quick:
            config = config.replace(data=config.data.replace(batch_size=min(4, config.data.batch_size)))
            args.repeats = 1
        batch, window = config.data.batch_size, config.window_frames
        spec = get_model_spec(name)
        face = getattr(config.model, "face_size", 0)
        data = _common.random_batch(batch, window, spec.modalities, face)
        timings = {}
        for jit in MODES:
            keras.utils.set_random_seed(0)
            model = build_model(name, config.model)
            step = _common.make_train_step(model, config, jit=jit)
            timings[jit] = _common.time_call(lambda step=step, data=data: step(data), repeats=args.repeats)
        plain, update, xla = (timings[m]["best"] for m in MODES)
        auto = {True: "step", "update": "update", False: "nothing"}[spec.xla]
        rows.append([name, f"{batch}x{window}", f"{plain:.3f}", f"{update:.3f}", f"{xla:.3f}",
                     f"{plain / update:.2f}", f"{plain / xla:.2f}",
                     " / ".join(f"{batch / timings[m]['best']:.1f}" for m in MODES),
                     " / ".join(f"{timings[m]['first']:.1f}" for m in MODES), auto])
        print(f"{name}: done", flush=True)
    print(f"best of {args.repeats} steps after the first call; random batches; one device")
    _common.print_table(HEADERS, rows)


if __name__ == "__main__":
    main()

"""Training steps with and without XLA, per model, at the YAMLs' shapes (what ``training.jit_compile: auto`` rests on).

    python benchmarks/xla.py                      # e2e_audio, ae_lstm, e2e_video
    python benchmarks/xla.py --models ae_lstm --repeats 5
    python benchmarks/xla.py --quick              # smaller batches, one timed step

For each model: the training engine's own step (``WindowedStep``, the model's
objective, Adam, weight decay) on a random batch of the YAML's batch size and
window, timed plain and with ``jit_compile=True``; the first call (tracing
and, with XLA, compiling) is reported apart. A model is registered with
``xla=True`` (so ``auto`` compiles it) when this benchmark shows it faster
*and* tests/test_xla.py shows the compiled step exact.
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
HEADERS = ["model", "batch", "plain s/step", "XLA s/step", "XLA speed-up", "plain windows/s",
           "XLA windows/s", "first call plain / XLA (s)", "auto compiles"]


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
        for jit in (False, True):
            keras.utils.set_random_seed(0)
            model = build_model(name, config.model)
            step = _common.make_train_step(model, config, jit=jit)
            timings[jit] = _common.time_call(lambda step=step, data=data: step(data), repeats=args.repeats)
        plain, xla = timings[False]["best"], timings[True]["best"]
        rows.append([name, f"{batch}x{window}", f"{plain:.3f}", f"{xla:.3f}", f"{plain / xla:.2f}",
                     f"{batch / plain:.1f}", f"{batch / xla:.1f}",
                     f"{timings[False]['first']:.1f} / {timings[True]['first']:.1f}", str(spec.xla)])
        print(f"{name}: done", flush=True)
    print(f"best of {args.repeats} steps after the first call; random batches; one device")
    _common.print_table(HEADERS, rows)


if __name__ == "__main__":
    main()

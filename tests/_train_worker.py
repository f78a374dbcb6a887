"""Subprocess entry for the training tests: set up devices, register the tiny model, run the CLI.

    python tests/_train_worker.py [--cpus N] [--dump FILE.npz] [--delay S] -- <emorec.train args>

``--cpus`` splits the CPU into N logical devices before TensorFlow starts;
``--dump`` writes the final weights (``w0``, ``w1`` ...) and the per-step
losses (``losses``) to an ``.npz``; ``--delay`` sleeps S seconds after every
step once the first ``latest`` checkpoint exists (so a test can kill the run
in the middle).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    """Run the CLI with the test hooks; the exit code is the CLI's."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--dump", type=Path)
    parser.add_argument("--delay", type=float, default=0.0)
    args, rest = parser.parse_known_args()
    rest = [a for a in rest if a != "--"]

    from emorec.training.strategy import configure_cpu_devices

    if args.cpus > 1:
        configure_cpu_devices(args.cpus)
    import _tiny_model  # noqa: F401  (registers the model)
    import numpy as np
    from cli_run import train_result

    losses = []
    out_dir = Path(rest[rest.index("--out") + 1])

    def on_step(info):
        losses.append(info["terms"]["loss"])
        if args.delay and (out_dir / "checkpoints" / "latest" / "checkpoint").exists():
            time.sleep(args.delay)

    try:
        result = train_result(rest, on_step=on_step)
    except Exception as exc:  # report like the CLI, keep the exit code meaningful
        from emorec.errors import EmorecError

        if isinstance(exc, EmorecError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    if args.dump:
        weights = {f"w{i}": w for i, w in enumerate(result.model.get_weights())}
        np.savez(args.dump, losses=np.array(losses), **weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())

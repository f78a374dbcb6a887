"""Peak memory of ``emorec predict`` for a short and a long recording (target: long/short <= 1.2).

    python benchmarks/predict_memory.py                      # 5 vs 60 minutes of speech, offline
    python benchmarks/predict_memory.py --stream --runtime onnx
    python benchmarks/predict_memory.py --short 0.5 --long 5 --export-dir /tmp/x

It exports a tiny untrained ``e2e_audio`` (8 LSTM units: the speech CNN is
the real one, and it is what costs memory per frame), writes espeak-ng speech
wavs of both lengths, and runs ``emorec predict`` on each in a fresh process
that reports its own peak resident set size (``VmHWM`` of
``/proc/self/status``; see ``benchmarks/build_memory.py`` for why not
``ru_maxrss``). Prediction decodes the audio a block of frames at a time and
runs ``--chunk-frames`` frames per model call with the recurrent state
carried over, so the peak is TensorFlow plus one chunk's activations;
what still grows with the length is the predictions and their table (tens of
bytes a frame, a few MB an hour) and, for video models, the face track (57
bytes a frame).

Measured (2-core CPU shared with other work, tiny e2e_audio, default 750-frame
chunks): offline 986 MiB for 5 minutes, 998 MiB for 60 (ratio 1.01);
``--stream`` the same; ONNX Runtime 1168 / 1170 MiB; LiteRT 966 / 967 MiB.
Before block-wise prediction: 975 MiB for 30 s, 2562 MiB for 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = {"name": "e2e_audio", "lstm_units": 8, "lstm_layers": 2}


def peak_rss_kib() -> int:
    """This process's peak resident set size since its ``exec``, in KiB (``VmHWM``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise OSError("no VmHWM in /proc/self/status")


def write_export(folder: Path, formats=("savedmodel",)) -> Path:
    """A run directory holding an untrained tiny ``e2e_audio`` and its export; returns the export."""
    import keras

    from emorec.config import resolve_config
    from emorec.export import export_run
    from emorec.models import build_model

    run_dir = folder / "run"
    resolve_config({"model": MODEL, "data": {"modalities": ["audio"]}}).save(run_dir)
    keras.utils.set_random_seed(0)
    model = build_model(MODEL["name"], MODEL)
    model.save(run_dir / "best.keras")
    export_run(run_dir, folder / "export", model=model, keras_file=run_dir / "best.keras", formats=formats)
    return folder / "export"


def write_speech(path: Path, minutes: float) -> Path:
    """``minutes`` of espeak-ng speech as a 16 kHz wav."""
    sys.path.insert(0, str(REPO / "tests"))
    from media_samples import speech_samples

    from emorec.media.write import write_wav
    from emorec.schema import SAMPLE_RATE

    write_wav(path, speech_samples(minutes * 60.0, SAMPLE_RATE), SAMPLE_RATE)
    return path


def child(argv: list[str]) -> None:
    """Run ``emorec predict`` in this process, then print its peak RSS in MiB."""
    from emorec.cli import main

    status = main(["predict", *argv])
    print(f"PEAK_RSS_MIB {peak_rss_kib() / 1024:.1f}")
    sys.exit(status)


def measure(export: Path, media: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """Peak RSS (MiB) and wall time (s) of one ``emorec predict`` in a fresh process."""
    args = [sys.executable, __file__, "--child", str(export), str(media), "--out", str(out),
            "--no-progress", "-q", *extra]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"predict failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PEAK_RSS_MIB"))
    return float(line.split()[1]), elapsed


def compare(short: float, long: float, extra: list[str], workdir=None, export_dir=None,
            formats=("savedmodel",), log=print) -> dict:
    """Peak RSS of ``emorec predict`` on ``short`` and ``long`` minutes of speech; returns ``{minutes: MiB}``."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        export = Path(export_dir) if export_dir else write_export(tmp, formats)
        results = {}
        for minutes in (short, long):
            t0 = time.perf_counter()
            wav = write_speech(tmp / f"speech_{minutes:g}min.wav", minutes)
            log(f"{minutes:g} min: wav written in {time.perf_counter() - t0:.0f} s")
            peak, elapsed = measure(export, wav, tmp / f"pred_{minutes:g}.csv", extra)
            wav.unlink()
            results[minutes] = peak
            log(f"{minutes:g} min: peak RSS {peak:.0f} MiB, predict {elapsed:.0f} s")
        return results


def main() -> None:
    """Measure both durations and print the ratio."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", type=float, default=5.0, help="minutes (default 5)")
    parser.add_argument("--long", type=float, default=60.0, help="minutes (default 60)")
    parser.add_argument("--runtime", choices=("savedmodel", "onnx", "litert"), default="savedmodel")
    parser.add_argument("--stream", action="store_true", help="predict with --stream")
    parser.add_argument("--chunk-frames", type=int, default=None, help="frames per model call (default 750)")
    parser.add_argument("--export-dir", type=Path, default=None, help="use this export instead of a tiny e2e_audio")
    parser.add_argument("--workdir", type=Path, default=None, help="temporary files here")
    args = parser.parse_args()
    extra = ["--runtime", args.runtime] + (["--stream"] if args.stream else [])
    if args.chunk_frames:
        extra += ["--chunk-frames", str(args.chunk_frames)]
    formats = ("savedmodel",) if args.runtime == "savedmodel" else ("savedmodel", args.runtime)
    results = compare(args.short, args.long, extra, args.workdir, args.export_dir, formats,
                      log=lambda line: print(line, flush=True))
    ratio = results[args.long] / results[args.short]
    verdict = "OK" if ratio <= 1.2 else "ABOVE TARGET"
    print(f"ratio {args.long:g} min / {args.short:g} min: {ratio:.2f} (target <= 1.2: {verdict})")


if __name__ == "__main__":
    main()

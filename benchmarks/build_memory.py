"""Peak memory of the TFRecord build for a short and a long recording (target: long/short <= 1.2).

    python benchmarks/build_memory.py                # 10 vs 60 minutes
    python benchmarks/build_memory.py --short 1 --long 6 --detect-every 50

For each duration it writes one recording (a speech wav and an mp4 of the
astronaut's face drifting, ``--size`` pixels, no sound track), then runs the
real build (``emorec build manifest``) in a fresh process
that reports its own peak resident set size (``VmHWM`` of ``/proc/self/status``). The
build streams the audio (decoded and resampled a block at a time), the video
frames and the face crops; what still grows with the duration is the face
track (float32 boxes and landmarks and an int8 found flag per video frame,
57 bytes a frame: 5.1 MB an hour) and the label arrays (8 bytes a frame). Face detection
runs every ``--detect-every`` frames (a cheap setting: the benchmark measures
memory, not faces).

Why not ``getrusage`` ru_maxrss: Linux carries it across ``execve`` (and
``subprocess`` forks or vforks this process), so the child's ru_maxrss is at
least this process's own peak, here the writing of the media (1340 MiB for 60
minutes, 332 MiB for 10). ``VmHWM`` is the high-water mark of the address
space the child got at ``exec``, i.e. the build's alone.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_media(folder: Path, minutes: float, size: tuple[int, int]) -> Path:
    """One recording of ``minutes`` (wav + silent mp4) and its manifest CSV; returns the CSV."""
    sys.path.insert(0, str(REPO / "tests"))
    from media_samples import astronaut_face_video, speech_samples

    from emorec.media.write import write_wav
    from emorec.schema import SAMPLE_RATE

    seconds = minutes * 60.0
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / "talk.wav", speech_samples(seconds, SAMPLE_RATE), SAMPLE_RATE)
    astronaut_face_video(folder / "talk.mp4", seconds=seconds, size=size, with_audio=False)
    csv = folder / "recordings.csv"
    csv.write_text("recording,partition,subject,audio,video,labels\ntalk,train,s1,talk.wav,talk.mp4,\n")
    return csv


def peak_rss_kib() -> int:
    """This process's peak resident set size since its ``exec``, in KiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    # Not Linux: ru_maxrss (KiB on Linux, bytes on macOS), which may include the parent's peak.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def child(argv: list[str]) -> None:
    """Run the build in this process, then print its peak RSS in MiB."""
    from emorec.cli import main

    status = main(["build", *argv])
    print(f"PEAK_RSS_MIB {peak_rss_kib() / 1024:.1f}")
    sys.exit(status)


def measure(csv: Path, out: Path, detect_every: int) -> tuple[float, float]:
    """Peak RSS (MiB) and wall time (s) of one build in a fresh process."""
    args = [sys.executable, __file__, "--child", "manifest", str(csv), str(out),
            "--face-detect-every", str(detect_every), "--no-progress", "--force"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PEAK_RSS_MIB"))
    return float(line.split()[1]), elapsed


def main() -> None:
    """Measure both durations and print the ratio."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", type=float, default=10.0, help="minutes (default 10)")
    parser.add_argument("--long", type=float, default=60.0, help="minutes (default 60)")
    parser.add_argument("--size", default="128x96", help="video width x height (default 128x96)")
    # MTCNN keeps the small copies of detect_every x detect_batch frames in hand,
    # so a very sparse setting costs memory of its own; 25 frames is 1 s.
    parser.add_argument("--detect-every", type=int, default=25,
                        help="frames between face detections (default 25 = 1 s)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the media and datasets here")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        results = {}
        for minutes in (args.short, args.long):
            folder = Path(tmp) / f"{minutes:g}min"
            t0 = time.perf_counter()
            csv = write_media(folder / "media", minutes, size)
            print(f"{minutes:g} min: media written in {time.perf_counter() - t0:.0f} s", flush=True)
            peak, elapsed = measure(csv, folder / "dataset", args.detect_every)
            results[minutes] = peak
            print(f"{minutes:g} min: peak RSS {peak:.0f} MiB, build {elapsed:.0f} s", flush=True)
        ratio = results[args.long] / results[args.short]
        verdict = "OK" if ratio <= 1.2 else "ABOVE TARGET"
        print(f"ratio {args.long:g} min / {args.short:g} min: {ratio:.2f} (target <= 1.2: {verdict})")


if __name__ == "__main__":
    main()

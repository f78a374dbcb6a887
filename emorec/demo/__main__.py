"""``python -m emorec.demo OUT [--seed N]``: write the demo corpus's media files."""

from __future__ import annotations

import argparse
import sys

from emorec.demo.writer import write_demo_media
from emorec.errors import EmorecError


def main(argv=None) -> int:
    """Parse the arguments, write the corpus and print the path of recordings.csv.

    Args:
        argv: the command-line arguments (``OUT [--seed N]``); None reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 when written, 2 when the media could not be written (the error is
        printed to stderr).
    """
    parser = argparse.ArgumentParser(prog="python -m emorec.demo", description=__doc__)
    parser.add_argument("out_dir", help="directory to write recordings.csv, media/ and labels/ into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        print(write_demo_media(args.out_dir, seed=args.seed))
    except EmorecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

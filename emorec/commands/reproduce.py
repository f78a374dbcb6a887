"""``emorec reproduce NAME --data D``: run a paper's experiment grid (``reproduce/NAME.yaml``) and write its tables.

    emorec reproduce chen_jin --data data/recola_features --out runs/chen_jin --jobs 2
    emorec reproduce chen_jin --quick                       # the demo corpus, a short schedule
    emorec reproduce chen_jin --data D --map long_audio=audio_functionals

Every distinct run of the grid is trained once (train/<config>.yaml plus the
run's settings) and evaluated on dev (its task's protocol); finished runs are
skipped when the command is run again, so an interrupted grid resumes. --jobs N
trains N runs at once in separate processes. The tables (Markdown and CSV,
paper / emorec per cell) go to OUT/tables/.
"""

from __future__ import annotations

import logging
from pathlib import Path

DESCRIPTION = "Run a paper's experiment grid (reproduce/NAME.yaml) and write its tables beside the paper's."
EPILOG = """\
grids: chen_jin (Chen & Jin, AVEC 2015: Tables 2-11, feature sets x losses, LSTM vs BLSTM,
single vs multi-task, concatenation vs layered fusion, late fusion, smoothing).
without --data (only with --quick): the demo corpus with audio_lld, audio_functionals,
video_geometric and video_appearance extracted (built once into the demo cache).
cells whose feature sets the dataset lacks (e.g. ECG on the demo) read n/a with the reason.
"""

logger = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    """The ``reproduce`` options.

    Args:
        parser: the :class:`argparse.ArgumentParser` of the ``reproduce`` subcommand; changed in
            place.
    """
    parser.add_argument("name", help="the grid: reproduce/<name>.yaml (chen_jin)")
    parser.add_argument("--data", type=Path, help="dataset directory (needed unless --quick)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default runs/reproduce-<name>)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, in separate processes")
    parser.add_argument("--quick", action="store_true",
                        help="the grid's short schedule and smaller network (the demo corpus without --data)")
    parser.add_argument("--grid", type=Path, default=None, help="a grid YAML instead of reproduce/<name>.yaml")
    parser.add_argument("--map", dest="mapping", action="append", default=[], metavar="NAME=SET",
                        help="use the dataset's feature set SET for the paper's feature NAME (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _mapping(items) -> dict:
    from emorec.errors import ConfigError

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"--map {item}: expected NAME=SET")
        out[name.strip()] = value.strip()
    return out


def run(args) -> int:
    """Run the grid; prints where the tables are and the first table.

    Args:
        args: the parsed ``reproduce`` arguments (:func:`add_arguments`).

    Returns:
        The exit status, 0 (runs that fail are reported in the tables, not raised).

    Raises:
        ConfigError: ``--jobs`` below 1, no ``--data`` without ``--quick``, or an unknown or
            malformed grid.
        EmorecError: an unusable dataset.
    """
    import time

    from emorec.commands.build import progress
    from emorec.dataset import open_dataset
    from emorec.errors import ConfigError
    from emorec.reproduce.grid import grid_path, load_grid
    from emorec.reproduce.runner import run_fusions, run_grid
    from emorec.reproduce.tables import write_tables

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    path = args.grid or grid_path(args.name)
    started = time.time()
    from emorec.config.base import read_yaml

    quick = dict(read_yaml(path).get("quick") or {}) if args.quick else {}
    if args.data is None:
        if not args.quick:
            raise ConfigError("emorec reproduce: --data DATASET is needed (or --quick for the demo corpus)")
        from emorec.demo.cache import ensure_demo_dataset

        # Training windows (data.window, data.hop) are cut from the stored ones when read.
        window = (quick.get("overrides") or {}).get("data", {}).get("window", 10.0)
        data_dir = ensure_demo_dataset(window, extract=tuple(quick.get("demo_extract") or ()),
                                       modalities=(), progress=progress(args))
    else:
        data_dir = args.data
    data = open_dataset(data_dir)
    grid = load_grid(path, data.feature_dims, quick=args.quick, overrides=_mapping(args.mapping))
    out = args.out or Path("runs") / f"reproduce-{grid.name}{'-quick' if args.quick else ''}"
    results = run_grid(grid, data.path, out, jobs=args.jobs, quick_overrides=quick.get("overrides"),
                       progress=progress(args))
    fusions = run_fusions(grid, data.path, out, results, progress=progress(args))
    minutes = (time.time() - started) / 60
    failed = [r for r in results.values() if r and "error" in r]
    header = (f"dataset {data.path}; {len(results)} runs ({len(failed)} failed)"
              f"{'; --quick: short schedule, smaller network' if args.quick else ''}; {minutes:.1f} min")
    written = write_tables(grid, out, results, fusions, header)
    print(f"tables: {written[0]} ({len(grid.tables)} tables, Markdown and CSV beside it)")
    print(f"runs: {out / 'runs'} ({len(results)} runs, {len(failed)} failed); {minutes:.1f} min")
    print((out / "tables" / f"{grid.tables[0].id}.md").read_text())
    return 0

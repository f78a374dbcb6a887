"""The grid's tables with the paper's numbers beside emorec's, as Markdown and CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from emorec.manifest import atomic_write_bytes
from emorec.reproduce.grid import Cell, Grid, Table

# metrics.json names of the table metrics.
_METRIC_KEYS = {"rmse": "rmse", "cc": "pearson", "ccc": "ccc"}


def cell_value(cell: Cell, table: Table, results: dict, fusions: dict) -> tuple[float | None, str, str]:
    """``(value, note, run directory)`` of one cell; value None with a note saying why there is none.

    Args:
        cell: the table cell (its run, target, metric, or fusion row).
        table: the cell's table (its kind: runs, ``smoothing`` or ``fusion``).
        results: :func:`emorec.reproduce.runner.run_grid` output.
        fusions: :func:`emorec.reproduce.runner.run_fusions` output.

    Returns:
        The dev value of the cell's metric (CCC, RMSE..., or α / CCC before and after smoothing),
        an empty note and the run directory; or None with a note (not run, failed, no run in
        the grid, no fusion); fusion cells have no run directory.
    """
    if table.kind == "fusion":
        info = fusions.get((table.id, cell.target))
        if not isinstance(info, dict):
            return None, info or "no fusion", ""
        row = (info["metrics"].get(cell.fusion_row) or {}).get(cell.target) or {}
        return row.get(cell.metric), "", ""
    if cell.run is None:
        return None, cell.missing or "n/a", ""
    summary = results.get(cell.run.key)
    if summary is None:
        return None, "not run", ""
    if "error" in summary:
        return None, f"failed: {summary['error']}", summary["run_dir"]
    if table.kind == "smoothing":
        value = {"alpha": summary["alpha"][cell.target],
                 "original": summary["raw"][cell.target]["ccc"],
                 "smoothed": summary["smoothed"][cell.target]["ccc"]}[cell.metric]
        return value, "", summary["run_dir"]
    return summary["raw"][cell.target][_METRIC_KEYS[cell.metric]], "", summary["run_dir"]


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def render_table(table: Table, results: dict, fusions: dict) -> tuple[str, str]:
    """``(markdown, csv)`` of one table; a Markdown cell reads ``paper / emorec``.

    Args:
        table: the table.
        results: :func:`emorec.reproduce.runner.run_grid` output.
        fusions: :func:`emorec.reproduce.runner.run_fusions` output.

    Returns:
        The Markdown (title, one row per table row, numbered notes for missing values) and the
        CSV (one line per cell: table, row, column, target, metric, paper, emorec, note, run
        directory).
    """
    by_row: dict[str, list] = {}
    notes: list[str] = []
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["table", "row", "column", "target", "metric", "paper", "emorec", "note", "run_dir"])
    for cell in table.cells:
        value, note, run_dir = cell_value(cell, table, results, fusions)
        text = f"{_fmt(cell.paper)} / {_fmt(value)}"
        if note and value is None:
            if note not in notes:
                notes.append(note)
            text += f" [{notes.index(note) + 1}]"
        by_row.setdefault(cell.row, []).append(text)
        writer.writerow([table.id, cell.row, cell.column, cell.target or "", cell.metric,
                         "" if cell.paper is None else cell.paper, "" if value is None else f"{value:.6g}",
                         note, run_dir])
    lines = [f"### {table.title}", "", "paper / emorec", "",
             "| | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    lines += [f"| {row} | " + " | ".join(by_row[row]) + " |" for row in table.rows]
    if notes:
        lines += [""] + [f"[{k}] {note}" for k, note in enumerate(notes, 1)]
    return "\n".join(lines) + "\n", buffer.getvalue()


def write_tables(grid: Grid, out, results: dict, fusions: dict, header: str = "") -> list[Path]:
    """``tables/<id>.md`` and ``.csv`` per table, and ``tables/README.md`` with all of them; the paths.

    Args:
        grid: the experiment grid.
        out: the output directory (tables go to ``out/tables``, created if missing).
        results: :func:`emorec.reproduce.runner.run_grid` output.
        fusions: :func:`emorec.reproduce.runner.run_fusions` output.
        header: a line under the README's title (with the paper's name), or empty.

    Returns:
        ``[README.md, <id>.md, <id>.csv, ...]`` in table order.
    """
    folder = Path(out) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    written, everything = [], [f"# {grid.name}: {grid.paper}", "", header, ""] if header else [f"# {grid.name}", ""]
    for table in grid.tables:
        markdown, text = render_table(table, results, fusions)
        for suffix, body in ((".md", markdown), (".csv", text)):
            path = folder / f"{table.id}{suffix}"
            atomic_write_bytes(path, body.encode())
            written.append(path)
        everything.append(markdown)
    index = folder / "README.md"
    atomic_write_bytes(index, "\n".join(everything).encode())
    return [index, *written]

"""An experiment grid (``reproduce/<name>.yaml``): tables of cells, each cell one run's metric beside the paper's.

A table has ``columns`` and ``rows``; a cell's run settings merge, later
winning: the grid's ``defaults``, the table's ``table_run``, the row's
``run``, the row's ``by_target[<target>]`` and the column's ``run``. Its
target dimension is the column's, else the row's, else the table's; a run
predicts that dimension alone unless its settings name ``targets``. Settings:
``features`` (the paper's names, mapped to the dataset's sets by the grid's
``feature_sets``), ``targets``, ``loss``, ``layers``, ``bidirectional``,
``fusion``, ``fusion_layers``.

Tables of ``kind: fusion`` name ``members`` (run settings per dimension) and
rows that pick a row of :func:`emorec.fusion.fuse_runs`' metrics; ``kind:
smoothing`` rows report the smoothing α, the raw and the smoothed CCC.

A cell whose feature sets the dataset does not hold is ``n/a`` with the
reason. Identical runs (same resolved settings) are trained once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from emorec.config.base import read_yaml
from emorec.errors import ConfigError

DIMENSIONS = ("arousal", "valence")
SETTINGS = ("features", "targets", "loss", "layers", "bidirectional", "fusion", "fusion_layers")
KINDS = ("runs", "fusion", "smoothing")


def grid_dir() -> Path:
    """The repository's ``reproduce/`` directory (next to the installed ``emorec`` package).

    Returns:
        The directory's path (not checked to exist).
    """
    import emorec

    return Path(emorec.__file__).resolve().parent.parent / "reproduce"


def grid_path(name: str) -> Path:
    """``reproduce/<name>.yaml``.

    Args:
        name: the grid's file stem, e.g. ``chen_jin``.

    Returns:
        The path of the existing file.

    Raises:
        ConfigError: no such grid (listing those there are).
    """
    path = grid_dir() / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in grid_dir().glob("*.yaml")) if grid_dir().is_dir() else []
        raise ConfigError(f"{path}: no experiment grid {name!r}; have: {', '.join(known) or 'none'}")
    return path


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run of the grid, resolved against a dataset: its settings as config keys."""

    settings: tuple  # ((key, value), ...) sorted, values JSON-plain

    @property
    def as_dict(self) -> dict:
        """The settings."""
        return {k: json.loads(v) for k, v in self.settings}

    @property
    def key(self) -> str:
        """A short digest of the settings: the run's identity (and folder suffix)."""
        return hashlib.sha256(repr(self.settings).encode()).hexdigest()[:10]

    @property
    def slug(self) -> str:
        """A readable folder name: targets, sets, loss, options, digest."""
        s = self.as_dict
        parts = ["+".join(t[0] for t in s["targets"]), "+".join(s["features"]), s["loss"]]
        if s.get("bidirectional"):
            parts.append("blstm")
        if s.get("fusion") == "layered":
            parts.append("layered")
        return "-".join(parts + [self.key])

    def config_flags(self) -> list[tuple[str, object, str]]:
        """``(dotted key, value, origin)`` for :func:`emorec.config.resolve_config`."""
        s = self.as_dict
        flags = [(f"model.{k}", s[k], "grid") for k in ("features", "targets", "layers", "bidirectional",
                                                          "fusion", "fusion_layers") if k in s]
        flags.append(("loss.name", s["loss"], "grid"))
        return flags


@dataclasses.dataclass
class Cell:
    """One number of a table: which run (or fusion row) gives it, and the paper's value."""

    table: str
    row: str
    column: str
    target: str | None
    metric: str
    paper: float | None
    run: RunSpec | None = None
    missing: str | None = None  # why there is no run (e.g. a feature set the dataset lacks)
    fusion_row: str | None = None


@dataclasses.dataclass
class Table:
    """A table's title, kind, cells (row-major) and, for fusion tables, its members per dimension."""

    id: str
    title: str
    kind: str
    rows: list[str]
    columns: list[str]
    cells: list[Cell]
    members: dict[str, list] = dataclasses.field(default_factory=dict)  # target -> [RunSpec or reason]


@dataclasses.dataclass
class Grid:
    """A loaded grid: the config it trains, its tables, and its quick mode's settings."""

    name: str
    paper: str
    config: str
    tables: list[Table]
    quick: dict
    path: Path

    def runs(self) -> list[RunSpec]:
        """Every distinct run the tables need, in first-use order."""
        seen: dict[str, RunSpec] = {}
        for table in self.tables:
            for cell in table.cells:
                if cell.run is not None:
                    seen.setdefault(cell.run.key, cell.run)
            for members in table.members.values():
                for member in members:
                    if isinstance(member, RunSpec):
                        seen.setdefault(member.key, member)
        return list(seen.values())


def _mapping(doc: dict, overrides: dict, path: Path) -> dict:
    mapping = dict(doc.get("feature_sets") or {})
    for name, value in overrides.items():
        if name not in mapping:
            raise ConfigError(f"--map {name}={value}: {path} has no feature name {name!r} "
                              f"(it has {', '.join(mapping)})")
        mapping[name] = [value]
    return mapping


def _resolve_sets(names, target: str, mapping: dict, held: dict) -> tuple[list[str] | None, str | None]:
    out = []
    for name in names:
        if name not in mapping:
            raise ConfigError(f"grid: feature name {name!r} is not in feature_sets ({', '.join(mapping)})")
        candidates = mapping[name]
        if isinstance(candidates, dict):
            candidates = candidates.get(target) or candidates.get(DIMENSIONS[0]) or []
        found = next((c for c in candidates if c in held), None)
        if found is None:
            return None, f"no {name} ({' or '.join(candidates)}) in the dataset"
        out.append(found)
    return out, None


def _scale(layers, scale: float):
    return [max(1, int(round(units * scale))) for units in layers]


def _spec(settings: dict, target: str, mapping: dict, held: dict, scale: float | None):
    unknown = [k for k in settings if k not in SETTINGS]
    if unknown:
        raise ConfigError(f"grid: unknown run setting(s) {', '.join(unknown)} (known: {', '.join(SETTINGS)})")
    settings = dict(settings)
    if "features" not in settings:
        raise ConfigError("grid: a cell's run names no features")
    sets, missing = _resolve_sets(settings["features"], target, mapping, held)
    if sets is None:
        return None, missing
    settings["features"] = sets
    settings.setdefault("targets", [target])
    settings["targets"] = [t for t in DIMENSIONS if t in settings["targets"]]
    if scale is not None and "layers" in settings:
        settings["layers"] = _scale(settings["layers"], scale)
    if settings.get("fusion", "concat") == "concat":
        settings.pop("fusion_layers", None)
    items = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in settings.items()))
    return RunSpec(items), None


def load_grid(source, feature_dims: dict, *, quick: bool = False, overrides: dict | None = None) -> Grid:
    """Load a grid YAML and resolve its cells against the feature sets a dataset holds.

    Args:
        source: the grid's path.
        feature_dims: ``{set: dim}`` of the dataset.
        quick: apply the grid's ``quick`` settings (smaller layers).
        overrides: ``{paper name: dataset set}`` replacing entries of ``feature_sets``.

    Returns:
        The :class:`Grid`.

    Raises:
        ConfigError: a malformed grid (naming the file and the table).
    """
    path = Path(source)
    doc = read_yaml(path)
    mapping = _mapping(doc, overrides or {}, path)
    defaults = dict(doc.get("defaults") or {})
    quick_doc = dict(doc.get("quick") or {})
    scale = float(quick_doc.get("layer_scale", 1.0)) if quick else None
    tables = []
    for t in doc.get("tables") or []:
        try:
            tables.append(_table(t, defaults, mapping, feature_dims, scale))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: table {t.get('id', '?') if isinstance(t, dict) else t}: malformed "
                              f"({exc!r})") from None
        except ConfigError as exc:
            raise ConfigError(f"{path}: table {t.get('id', '?')}: {exc}") from None
    if not tables:
        raise ConfigError(f"{path}: no tables")
    return Grid(name=str(doc.get("name", path.stem)), paper=str(doc.get("paper", "")),
                config=str(doc.get("config", "feature_lstm")), tables=tables, quick=quick_doc, path=path)


def _table(t: dict, defaults: dict, mapping: dict, held: dict, scale) -> Table:
    kind = t.get("kind", "runs")
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    columns = t["columns"]
    names = [c.get("name") or " ".join(x for x in (c.get("target"), c["metric"]) if x) for c in columns]
    cells, rows = [], []
    for row in t["rows"]:
        rows.append(row["label"])
        paper = list(row.get("paper") or [None] * len(columns))
        if len(paper) != len(columns):
            raise ConfigError(f"row {row['label']!r} has {len(paper)} paper values for {len(columns)} columns")
        for column, name, value in zip(columns, names, paper):
            target = column.get("target") or row.get("target") or t.get("target")
            cell = Cell(t["id"], row["label"], name, target, column["metric"], value,
                        fusion_row=row.get("fusion_row"))
            if kind != "fusion":
                if target not in DIMENSIONS:
                    raise ConfigError(f"row {row['label']!r}, column {name!r}: no target dimension")
                settings = {**defaults, **(t.get("table_run") or {}), **(row.get("run") or {}),
                            **((row.get("by_target") or {}).get(target) or {}), **(column.get("run") or {})}
                cell.run, cell.missing = _spec(settings, target, mapping, held, scale)
            cells.append(cell)
    members = {}
    for target, specs in (t.get("members") or {}).items():
        members[target] = []
        for settings in specs:
            spec, missing = _spec({**defaults, **settings}, target, mapping, held, scale)
            members[target].append(spec if spec is not None else missing)
    return Table(t["id"], t.get("title", t["id"]), kind, rows, names, cells, members)

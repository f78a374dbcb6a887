"""Dense ARFF files (Weka's attribute-relation format) as the AVEC 2016 release of RECOLA has them.

One parser for the gold-standard ratings (:func:`emorec.media.labels.read_arff`)
and the released feature sets (:func:`emorec.features.arff.read_feature_arff`).
It reads what those files use and a little more:

- ``%`` comments and blank lines anywhere, header keywords in any case;
- ``@relation NAME``;
- ``@attribute NAME TYPE`` where TYPE is ``numeric``, ``real`` or ``integer``
  (read as float64), or ``string``, ``date ...`` or a nominal ``{a, b}`` list
  (kept as text); a name may be quoted;
- ``@data`` followed by one comma-separated row per line, values optionally
  quoted with ``'`` or ``"``, ``?`` for a missing numeric value (read as NaN,
  for the caller to report with its own rule).

Sparse rows (``{0 1.5, 3 2}``) and relational attributes are rejected. Every
error is raised as the caller's :class:`~emorec.errors.EmorecError` subclass
with a message that starts with the file's path and, for a row, its line.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from emorec.errors import EmorecError, MediaError

NUMERIC_TYPES = ("numeric", "real", "integer")
TEXT_TYPES = ("string", "date")
MISSING = "?"


@dataclasses.dataclass
class ArffTable:
    """The rows of one ARFF file, split into its numeric and its text attributes.

    ``names`` are all attribute names in file order (quotes removed, case
    kept) and ``numeric_kind[i]`` says whether attribute ``i`` is numeric.
    ``numeric`` is ``(N, number of numeric attributes)`` float64 in file order
    (NaN where the file has ``?``), ``text`` maps each text attribute's name to
    its ``N`` values, and ``lines`` ``(N,)`` holds each row's line number.
    """

    path: Path
    relation: str
    names: tuple[str, ...]
    numeric_kind: tuple[bool, ...]
    numeric: np.ndarray
    text: dict[str, list[str]]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)

    def find(self, name: str) -> int | None:
        """Index of the attribute called ``name`` (case-insensitive), or None."""
        lower = name.lower()
        for i, candidate in enumerate(self.names):
            if candidate.lower() == lower:
                return i
        return None

    def numeric_index(self, attribute: int) -> int:
        """Column of ``numeric`` that holds attribute number ``attribute`` (which must be numeric)."""
        if not self.numeric_kind[attribute]:
            raise ValueError(f"attribute {self.names[attribute]} is not numeric")
        return sum(self.numeric_kind[:attribute])


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _split_attribute(rest: str) -> tuple[str, str] | None:
    """``NAME TYPE`` of an @attribute line (after the keyword); NAME may be quoted."""
    rest = rest.strip()
    if rest[:1] in ("'", '"'):
        end = rest.find(rest[0], 1)
        if end < 0:
            return None
        name, kind = rest[1:end], rest[end + 1 :].strip()
    else:
        parts = rest.split(None, 1)
        if len(parts) < 2:
            return None
        name, kind = parts
    return (name, kind) if name and kind else None


def _attribute_kind(kind: str) -> bool | None:
    """True for a numeric type, False for a text one, None for a type this reader does not know."""
    lower = kind.lower()
    if lower in NUMERIC_TYPES:
        return True
    if lower.startswith("{") and lower.endswith("}"):
        return False
    if lower.split(None, 1)[0] in TEXT_TYPES:
        return False
    return None


def _fields(line: str) -> list[str]:
    if "'" not in line and '"' not in line:
        return line.split(",")
    return next(csv.reader([line], quotechar="'" if "'" in line else '"', skipinitialspace=True))


def _parse_number(cell: str) -> float | None:
    """The value of one numeric cell: NaN for ``?``, None if it is not a number."""
    text = cell.strip()
    if text == MISSING:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        return None


def read_arff_table(path, error: type[EmorecError] = MediaError) -> ArffTable:
    """Read a dense ARFF file.

    Args:
        path: the file.
        error: the EmorecError subclass to raise (LabelError for ratings, MediaError for features).

    Returns:
        ArffTable with every row; an empty ``@data`` section gives zero rows.

    Raises:
        error: missing file, malformed header (attribute without a type or of
            an unknown type, a repeated name, a line that is not a header
            line, no ``@data``), a sparse row, a row with the wrong number of
            fields, or a numeric attribute whose value is not a number (naming
            the line, the attribute and its column).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such ARFF file")
    relation = ""
    names: list[str] = []
    numeric_kind: list[bool] = []
    rows: list[list[float]] = []
    text_rows: list[list[str]] = []
    lines: list[int] = []
    in_data = False
    numeric_at: list[int] = []
    text_at: list[int] = []
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for line_num, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("%"):
                continue
            if not in_data:
                keyword = line.split(None, 1)[0].lower()
                if keyword == "@attribute":
                    parsed = _split_attribute(line[len("@attribute") :])
                    if parsed is None:
                        raise error(f"{path}: line {line_num}: malformed @attribute (needs a name and a type)")
                    name, kind = parsed
                    numeric = _attribute_kind(kind)
                    if numeric is None:
                        raise error(
                            f"{path}: line {line_num}: attribute {name} has type {kind!r}, which this "
                            f"reader does not know (expected {', '.join(NUMERIC_TYPES + TEXT_TYPES)} "
                            "or a nominal {...} list)"
                        )
                    if any(n.lower() == name.lower() for n in names):
                        raise error(f"{path}: line {line_num}: attribute {name} declared twice")
                    names.append(name)
                    numeric_kind.append(numeric)
                elif keyword == "@data":
                    if not names:
                        raise error(f"{path}: line {line_num}: @data before any @attribute")
                    in_data = True
                    numeric_at = [i for i, k in enumerate(numeric_kind) if k]
                    text_at = [i for i, k in enumerate(numeric_kind) if not k]
                elif keyword == "@relation":
                    relation = _unquote(line[len("@relation") :])
                else:
                    raise error(f"{path}: line {line_num}: unexpected header line {line[:40]!r}")
                continue
            if line.startswith("{"):
                raise error(f"{path}: line {line_num}: sparse ARFF rows are not supported")
            fields = _fields(line)
            if len(fields) != len(names):
                raise error(f"{path}: line {line_num}: {len(fields)} fields, {len(names)} attributes")
            cells = [fields[i] for i in numeric_at]
            try:
                values = list(map(float, cells))
            except ValueError:
                values = []
                for i, cell in zip(numeric_at, cells):
                    value = _parse_number(cell)
                    if value is None:
                        raise error(
                            f"{path}: line {line_num}: {names[i]} (column {i + 1}) is "
                            f"{cell.strip()!r}, not a number"
                        ) from None
                    values.append(value)
            rows.append(values)
            text_rows.append([_unquote(fields[i]) for i in text_at])
            lines.append(line_num)
    if not in_data:
        raise error(f"{path}: not an ARFF file (no @data section)")
    numeric_values = np.array(rows, dtype=np.float64).reshape(len(rows), len(numeric_at))
    text = {names[i]: [row[j] for row in text_rows] for j, i in enumerate(text_at)}
    return ArffTable(
        path=path,
        relation=relation,
        names=tuple(names),
        numeric_kind=tuple(numeric_kind),
        numeric=numeric_values,
        text=text,
        lines=np.array(lines, dtype=np.int64),
    )

"""The machinery of emorec's typed configs: sections, per-setting rules, where each value came from, YAML.

A config section is a frozen dataclass derived from :class:`Section`. Each
setting is declared with :func:`setting` and a *rule* that checks (and, for
numbers, normalises) its value when the section is created; rules between
settings go in :meth:`Section.check`. So every rule is checked once, where the
value enters, and a section that exists is valid.

Values come from several places (the built-in defaults, a YAML file, its
``demo:`` section, ``--set`` overrides, dedicated flags); :class:`Origins`
remembers which place set each key, so an error names the place the bad
value came from (``--set data.batch_size=abc: data.batch_size must be a
positive integer, got 'abc'``), not the file it was merged into.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

from emorec.errors import ConfigError

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class FieldError(Exception):
    """A rule's verdict on one setting: ``key`` and what is wrong with its value."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key} {message}")
        self.key = key
        self.message = message


# -- rules: (key, value) -> value, or FieldError -------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(key: str, value):
    """An integer >= 1 (booleans are not integers here).

    Args:
        key: the dotted setting name, used in the error message.
        value: the value to check, as read from YAML or a flag.

    Returns:
        ``value`` as an int.

    Raises:
        FieldError: ``value`` is not an integer or is below 1.

    >>> positive_int("data.batch_size", 25)
    25
    """
    if not (_is_int(value) and value >= 1):
        raise FieldError(key, f"must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(key: str, value):
    """An integer >= 0 (booleans are not integers here).

    Args:
        key: the dotted setting name, used in the error message.
        value: the value to check, as read from YAML or a flag.

    Returns:
        ``value`` as an int.

    Raises:
        FieldError: ``value`` is not an integer or is negative.
    """
    if not (_is_int(value) and value >= 0):
        raise FieldError(key, f"must be a non-negative integer, got {value!r}")
    return int(value)


def positive_number(key: str, value):
    """A finite number > 0 (returned as float).

    Args:
        key: the dotted setting name, used in the error message.
        value: the value to check, as read from YAML or a flag.

    Returns:
        ``value`` as a float.

    Raises:
        FieldError: ``value`` is not a finite number (booleans excluded) or is not above 0.

    >>> positive_number("optimizer.learning_rate", 1)
    1.0
    """
    if not (_is_number(value) and value > 0):
        raise FieldError(key, f"must be a positive number, got {value!r}")
    return float(value)


def non_negative_number(key: str, value):
    """A finite number >= 0 (returned as float).

    Args:
        key: the dotted setting name, used in the error message.
        value: the value to check, as read from YAML or a flag.

    Returns:
        ``value`` as a float.

    Raises:
        FieldError: ``value`` is not a finite number (booleans excluded) or is negative.
    """
    if not (_is_number(value) and value >= 0):
        raise FieldError(key, f"must be a non-negative number, got {value!r}")
    return float(value)


def number(key: str, value):
    """Any finite number (returned as float).

    Args:
        key: the dotted setting name, used in the error message.
        value: the value to check, as read from YAML or a flag.

    Returns:
        ``value`` as a float.

    Raises:
        FieldError: ``value`` is not a number (booleans excluded), or is NaN or infinite.
    """
    if not _is_number(value):
        raise FieldError(key, f"must be a number, got {value!r}")
    return float(value)


def boolean(key: str, value):
    """``true`` or ``false``.

    Args:
        key: the dotted setting name, used in the error message.
        value: the value to check, as read from YAML or a flag.

    Returns:
        ``value`` unchanged.

    Raises:
        FieldError: ``value`` is not a bool (``0``/``1`` are refused).
    """
    if not isinstance(value, bool):
        raise FieldError(key, f"must be true or false, got {value!r}")
    return value


def text(key: str, value):
    """A non-empty string.

    Args:
        key: the dotted setting name, used in the error message.
        value: the value to check, as read from YAML or a flag.

    Returns:
        ``value`` unchanged.

    Raises:
        FieldError: ``value`` is not a string, or is empty.
    """
    if not (isinstance(value, str) and value):
        raise FieldError(key, f"must be a non-empty string, got {value!r}")
    return value


def choice(*options) -> Callable:
    """A rule accepting one of ``options``.

    Args:
        *options: the allowed values (compared with ``in``).

    Returns:
        The rule ``(key, value) -> value``, raising :class:`FieldError` for anything else.

    >>> choice("audio", "video")("data.modality", "audio")
    'audio'
    """

    def rule(key: str, value):
        if value not in options:
            raise FieldError(key, f"must be one of {', '.join(map(str, options))}, got {value!r}")
        return value

    rule.__doc__ = f"One of {options}."
    return rule


def fraction(low_open: bool = False, high_open: bool = True) -> Callable:
    """A rule accepting a number in [0, 1) by default; ``low_open``/``high_open`` exclude the ends.

    Args:
        low_open: refuse 0 (the interval is open at 0).
        high_open: refuse 1 (the interval is open at 1); False allows 1.

    Returns:
        The rule ``(key, value) -> float``, raising :class:`FieldError` outside the interval.

    >>> fraction(high_open=False)("data.dropout", 1)
    1.0
    """

    def rule(key: str, value):
        ok = _is_number(value) and (value > 0 if low_open else value >= 0) and (
            value < 1 if high_open else value <= 1)
        if not ok:
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            raise FieldError(key, f"must be a number in {lo}0, 1{hi}, got {value!r}")
        return float(value)

    return rule


def optional(rule: Callable) -> Callable:
    """A rule accepting ``null`` or whatever ``rule`` accepts.

    Args:
        rule: the rule applied to every value but None.

    Returns:
        The rule ``(key, value) -> None | rule(key, value)``.
    """

    def checked(key: str, value):
        return None if value is None else rule(key, value)

    checked.__doc__ = f"null or: {rule.__doc__}"
    return checked


def list_of(rule: Callable, *, non_empty: bool = True, unique: bool = True) -> Callable:
    """A rule accepting a list whose items each pass ``rule``; the value is returned as a tuple.

    Args:
        rule: the rule applied to every item (its errors name the item as ``key[i]``).
        non_empty: refuse an empty list.
        unique: refuse a list holding an item twice (compared after ``rule``).

    Returns:
        The rule ``(key, value) -> tuple``, raising :class:`FieldError` for a string or
        non-list, an empty list (``non_empty``), a repeated item (``unique``) or a bad item.

    >>> list_of(positive_int)("data.sizes", [1, 2])
    (1, 2)
    """

    def checked(key: str, value):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise FieldError(key, f"must be a list, got {value!r}")
        if non_empty and not value:
            raise FieldError(key, "must not be empty")
        items = tuple(rule(f"{key}[{i}]", item) for i, item in enumerate(value))
        if unique and len(set(items)) != len(items):
            raise FieldError(key, f"lists an item twice: {list(value)!r}")
        return items

    return checked


def setting(default=dataclasses.MISSING, rule: Callable | None = None, *, default_factory=dataclasses.MISSING,
            doc: str = ""):
    """A dataclass field with a rule (checked on creation) and a one-line description.

    Args:
        default: the default value (immutable values only; else use ``default_factory``);
            leave out for a required setting.
        rule: ``(key, value) -> value`` applied when the section is created (None: no check).
        default_factory: a zero-argument callable making the default.
        doc: the one-line description shown in the config reference.

    Returns:
        The :func:`dataclasses.field`, with ``rule`` and ``doc`` in its metadata.
    """
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"rule": rule, "doc": doc})


# -- sections --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Section:
    """A typed, immutable config section; subclasses declare settings with :func:`setting`.

    ``SECTION`` names the section in messages (``data``, ``model``...).
    """

    SECTION: ClassVar[str] = "section"

    def __post_init__(self):
        for f in dataclasses.fields(self):
            rule = f.metadata.get("rule")
            if rule is not None:
                object.__setattr__(self, f.name, rule(f.name, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Rules between settings; raise :class:`FieldError` naming the setting at fault.

        The base section has none; subclasses override this (it runs after every
        setting's own rule, in ``__post_init__``).

        Raises:
            FieldError: in subclasses, when settings contradict each other.
        """

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The setting names, in declaration order.

        Returns:
            A tuple of the field names of ``cls``.
        """
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, doc: Mapping | None, origins: Origins | str = "<config>", section: str | None = None):
        """Create the section from a mapping; unknown keys and bad values raise ConfigError.

        Args:
            doc: the section's settings (``None`` = all defaults).
            origins: where the values came from (an :class:`Origins`, or one label for all).
            section: the section's name in messages (default ``cls.SECTION``).

        Returns:
            The checked section.

        Raises:
            ConfigError: ``<origin>: <section>.<key> <problem>``, or unknown keys with the known ones.
        """
        section = section or cls.SECTION
        origins = origins if isinstance(origins, Origins) else Origins(str(origins))
        if doc is None:
            doc = {}
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{origins.of(section)}: `{section}` must be a mapping, got {doc!r}")
        known = cls.keys()
        unknown = [k for k in doc if k not in known]
        if unknown:
            where = origins.of(f"{section}.{unknown[0]}")
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)} "
                f"(known: {', '.join(known)})"
            )
        try:
            return cls(**dict(doc))
        except FieldError as exc:
            key = exc.key.split("[")[0]
            raise ConfigError(f"{origins.of(f'{section}.{key}')}: {section}.{exc.key} {exc.message}") from None

    def to_dict(self) -> dict:
        """Plain YAML-ready values (tuples as lists, nested sections as dicts).

        Returns:
            ``{setting: value}`` in declaration order.
        """
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes):
        """A copy with ``changes`` (checked like a new section).

        Args:
            **changes: new values by setting name.

        Returns:
            The new section of the same class.

        Raises:
            FieldError: a changed value breaks a rule (not turned into ConfigError here).
        """
        return dataclasses.replace(self, **changes)

    @classmethod
    def coerce(cls, value, origins: Origins | str = "<config>"):
        """``value`` itself if it is a ``cls``, else ``cls.from_dict(value)``.

        Args:
            value: a section of this class, a mapping of its settings, or None (all defaults).
            origins: where a mapping's values came from (an :class:`Origins`, or one label).

        Returns:
            The section.

        Raises:
            ConfigError: a mapping with unknown keys or bad values.
        """
        return value if isinstance(value, cls) else cls.from_dict(value, origins)


def _plain(value):
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


# -- where values came from -------------------------------------------------------------------------


class Origins:
    """Which source (file, ``--set`` flag...) set each dotted key; the most specific record wins."""

    def __init__(self, default: str):
        self.default = default
        self._by_key: dict[str, str] = {}

    def record(self, doc: Mapping, label: str, prefix: str = "") -> None:
        """Note ``label`` as the origin of every key (and sub-key) of ``doc``.

        Args:
            doc: a nested mapping of settings that came from one source.
            label: how to name that source in errors (a path, ``--set key=value``...).
            prefix: dotted prefix of ``doc``'s keys (with its trailing dot), for sub-mappings.
        """
        for key, value in doc.items():
            dotted = f"{prefix}{key}"
            self._by_key[dotted] = label
            if isinstance(value, Mapping):
                self.record(value, label, f"{dotted}.")

    def of(self, dotted: str) -> str:
        """The origin of ``dotted`` (or of its nearest recorded parent; else the default).

        Args:
            dotted: a dotted setting key such as ``data.batch_size``.

        Returns:
            The label recorded for the key or its nearest parent, else the default label.
        """
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            label = self._by_key.get(".".join(parts[:end]))
            if label is not None:
                return label
        return self.default


# -- YAML and overrides -----------------------------------------------------------------------------


def read_yaml(path: str | os.PathLike) -> dict:
    """Parse a YAML file holding a mapping.

    Args:
        path: the file.

    Returns:
        The mapping (empty for an empty file).

    Raises:
        ConfigError: the file is missing, not YAML, or not a mapping (naming the file).
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc.reason})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(doc).__name__}")
    return doc


def dump_yaml(doc: Mapping) -> str:
    """YAML text of a mapping, keys in their given order.

    Args:
        doc: a mapping; sections and tuples inside it become plain dicts and lists.

    Returns:
        The YAML document text.
    """
    return yaml.safe_dump(_plain(dict(doc)), sort_keys=False)


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """Recursive merge; values of ``override`` win, nested mappings merge key by key.

    Args:
        base: the mapping to start from (not modified).
        override: the mapping whose values replace or extend ``base``'s (not modified).

    Returns:
        A new dict (deep copies of both inputs' values).

    >>> deep_merge({"data": {"window": 6.0, "batch_size": 25}}, {"data": {"batch_size": 4}})
    {'data': {'window': 6.0, 'batch_size': 4}}
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text_: str, source: str = "--set") -> dict:
    """``"training.epochs=3"`` -> ``{"training": {"epochs": 3}}``; the value is read as YAML.

    Args:
        text_: ``key.sub=value``.
        source: how to name the override in errors.

    Returns:
        A nested mapping holding the one value.

    Raises:
        ConfigError: no ``=``, an empty key part, or a value YAML cannot read.

    >>> parse_override("optimizer.learning_rate=3e-4")
    {'optimizer': {'learning_rate': 0.0003}}
    >>> parse_override("data.modalities=[audio]")
    {'data': {'modalities': ['audio']}}
    """
    key, sep, raw = text_.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"{source}: expected key.sub=value, got {text_!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} {text_}: cannot read the value ({exc})") from exc
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "3e-4" (no dot) as a string
    for part in reversed(parts):
        value = {part: value}
    return value


def flatten(doc: Mapping, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a nested mapping.

    Args:
        doc: the nested mapping (an empty sub-mapping counts as a leaf).
        prefix: dotted prefix for the keys (with its trailing dot).

    Yields:
        ``(dotted key, value)`` pairs, depth first in key order.

    >>> list(flatten({"data": {"window": 6.0}, "seed": 1}))
    [('data.window', 6.0), ('seed', 1)]
    """
    for key, value in doc.items():
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value

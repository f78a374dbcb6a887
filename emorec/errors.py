"""Exceptions emorec raises for bad input; every message names the file and the problem."""


class EmorecError(Exception):
    """Base class for errors caused by the user's data or settings (exit code 2 in the CLIs)."""


class MediaError(EmorecError, ValueError):
    """Audio or video that cannot be used (missing, corrupt, no stream, no face, zero length)."""


class LabelError(EmorecError, ValueError):
    """A label file that cannot be used (missing columns, NaN, non-monotonic times, too short)."""


class AlignmentError(EmorecError, ValueError):
    """Audio, video and labels whose lengths differ by more than the stated tolerance."""


class ConfigError(EmorecError, ValueError):
    """A training, evaluation or build setting that is missing or invalid."""


class DatasetError(EmorecError, ValueError):
    """A dataset directory that cannot be used (no manifest, another schema version, missing shards)."""


class ExportError(ConfigError):
    """An export directory (or one of its model files) that cannot be used, or a format that cannot be written."""

"""The 76 IS10 LLDs computed by openSMILE itself (optional extra ``emorec[opensmile]``).

The ``opensmile`` package ships openSMILE's native library under audEERING's
research / non-commercial licence, so it is never part of emorec's default
install: ``pip install emorec[opensmile]`` adds it, and this module raises
:class:`OpensmileMissingError` (a :class:`~emorec.errors.ConfigError` that is
also an :class:`ImportError`) when it is missing. emorec's own implementation
is :mod:`emorec.features.audio_lld`; this module exists to compare with it and
to reproduce openSMILE's numbers where its licence allows.

Configuration: openSMILE's IS10 LLDs use 10 ms hops. Chen & Jin extracted
them "with 40ms frame window and 40ms shift", so instead of pooling 10 ms
frames this module runs the installed ``IS10_paraling_compat.conf`` (the
emobase2010 LLD set) patched at run time: both framers (``fr25`` for loudness,
MFCC, mel bands, LSPs; ``fr40`` for pitch, jitter and shimmer) get
``frameStep = 0.040`` and ``frameSize = 0.040`` (``pitch_window="frame"``) or
``fr40`` keeps IS10's 0.060 (``pitch_window="is10"``). openSMILE frames start
at multiples of the step ("left" alignment), so its frame ``i`` is emorec's
frame ``i``. A ``cVectorConcat`` appended to the config joins the ``lld`` and
``lld_de`` levels so that one pass returns all 76 columns. The patched copy is
written to a temporary directory of the process; nothing of openSMILE's is
stored in emorec.

Process: openSMILE's native library corrupts the heap (``malloc(): invalid
size``, then an abort) when it runs in a process that loaded TensorFlow first.
So when ``tensorflow`` is already imported, :class:`OpensmileLLD` runs openSMILE
in a child Python process (``python -m emorec.features.opensmile_lld``) that
never imports it, passing the samples and the LLDs through ``.npy`` files;
otherwise it runs in process. The numbers are the same either way.

Frame count: the signal is zero-padded to whole frames (plus the 20 ms a
60 ms pitch window reaches past the last frame), as emorec's grid does, and
the first ``ceil(N / 640)`` rows are returned (a one-frame recording comes
back as NaN: openSMILE needs two frames). openSMILE's own quirks stay: its
pitch smoother outputs 0 F0 and voicing for frame 0, the last frame's pitch,
jitter and shimmer columns repeat the previous frame's unsmoothed values, and
``pcm_loudness`` uses only each frame's first sample (audeering/opensmile
issue #51). :mod:`emorec.features.audio_lld` reproduces the first and the
third by default, not the second.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError, MediaError
from emorec.features.audio_lld import (
    DEFAULT_PITCH_WINDOW,
    LLD_NAMES,
    PITCH_WINDOWS,
    checked_samples,
)
from emorec.manifest import atomic_write_bytes
from emorec.schema import FRAME_PERIOD, FRAME_SAMPLES, SAMPLE_RATE

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install emorec[opensmile]; licence: research/non-commercial"
IS10_CONFIG = "is09-13/IS10_paraling_compat.conf"
# Level holding the 38 smoothed LLDs followed by their 38 deltas (added to the config here).
ALL_LLD_LEVEL = "emorec_lld_all"
_CONCAT_SECTION = f"""
[componentInstances:cComponentManager]
instance[emorecLldAll].type=cVectorConcat

[emorecLldAll:cVectorConcat]
reader.dmLevel = lld;lld_de
writer.dmLevel = {ALL_LLD_LEVEL}
includeSingleElementFields = 1
"""


class OpensmileMissingError(ConfigError, ImportError):
    """The optional ``opensmile`` package is not installed."""


def _import_opensmile():
    try:
        import opensmile
    except ImportError as exc:
        raise OpensmileMissingError(
            f"emorec.features.opensmile_lld: the opensmile package is not installed "
            f"({INSTALL_HINT})"
        ) from exc
    return opensmile


def patch_config(text: str, settings: dict[tuple[str, str], str]) -> str:
    """Set ``key = value`` lines inside named ``[section:type]`` blocks of an openSMILE config.

    Args:
        text: config file text.
        settings: ``{(section, key): value}``; ``section`` is the instance name before ``:``.

    Returns:
        The patched text.

    Raises:
        ConfigError: a requested key is not present in its section.

    >>> patch_config("[fr:cFramer]\\nframeStep = 0.010\\n", {("fr", "frameStep"): "0.040"})
    '[fr:cFramer]\\nframeStep = 0.040\\n'
    """
    done = set()
    section = None
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and "]" in stripped:
            section = stripped[1:].split(":", 1)[0].split("]", 1)[0].strip()
            continue
        key = stripped.split("=", 1)[0].strip() if "=" in stripped else None
        if key is not None and (section, key) in settings:
            ending = line[len(line.rstrip("\r\n")) :]
            lines[i] = f"{key} = {settings[(section, key)]}{ending}"
            done.add((section, key))
    missing = set(settings) - done
    if missing:
        raise ConfigError(f"openSMILE config: settings not found: {sorted(missing)}")
    return "".join(lines)


@functools.lru_cache(maxsize=1)
def _work_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="emorec-opensmile-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.lru_cache(maxsize=len(PITCH_WINDOWS))
def config_path(pitch_window: str = DEFAULT_PITCH_WINDOW) -> Path:
    """Path of the installed IS10 config patched to 40 ms steps (written once per process).

    Args:
        pitch_window: ``frame`` (40 ms pitch frames) or ``is10`` (60 ms).

    Returns:
        Path of the patched config in a temporary directory of this process.

    Raises:
        OpensmileMissingError: the opensmile package is not installed.
        ConfigError: unknown ``pitch_window``, or the installed config lacks a framer setting.
    """
    if pitch_window not in PITCH_WINDOWS:
        raise ConfigError(
            f"opensmile_lld: unknown pitch_window {pitch_window!r} "
            f"(expected one of {', '.join(PITCH_WINDOWS)})"
        )
    opensmile = _import_opensmile()
    source = Path(opensmile.__file__).parent / "core" / "config" / IS10_CONFIG
    step = f"{FRAME_PERIOD:.3f}"
    size = f"{PITCH_WINDOWS[pitch_window] / SAMPLE_RATE:.3f}"
    text = patch_config(
        source.read_text(),
        {
            ("fr25", "frameSize"): step,
            ("fr25", "frameStep"): step,
            ("fr40", "frameSize"): size,
            ("fr40", "frameStep"): step,
        },
    )
    target = _work_dir() / f"IS10_40ms_step_pitch_{pitch_window}.conf"
    atomic_write_bytes(target, (text + _CONCAT_SECTION).encode())
    logger.debug("patched %s -> %s", source, target)
    return target


class OpensmileLLD:
    """openSMILE's IS10 LLDs on emorec's 40 ms grid; build once, call on many recordings.

    Args:
        pitch_window: ``frame`` (40 ms pitch frames, default) or ``is10`` (60 ms).

    Raises:
        OpensmileMissingError: the opensmile package is not installed.
        ConfigError: unknown ``pitch_window`` or unexpected column names from openSMILE.
    """

    def __init__(self, pitch_window: str = DEFAULT_PITCH_WINDOW):
        opensmile = _import_opensmile()
        if pitch_window not in PITCH_WINDOWS:
            raise ConfigError(f"pitch_window must be one of {', '.join(PITCH_WINDOWS)}, got {pitch_window!r}")
        self.pitch_window = pitch_window
        self._smile = None
        if "tensorflow" in sys.modules:
            return  # openSMILE then runs in a child process (see the module docstring)
        self._smile = opensmile.Smile(
            feature_set=str(config_path(pitch_window)), feature_level=ALL_LLD_LEVEL
        )
        names = tuple(self._smile.feature_names)
        if names != LLD_NAMES:
            raise ConfigError(
                f"opensmile_lld: openSMILE {opensmile.__version__} returned columns {names[:3]}..., "
                f"expected emorec's LLD_NAMES"
            )

    def __call__(self, samples: np.ndarray, source: str = "<samples>") -> np.ndarray:
        """``(ceil(len(samples) / 640), 76)`` float32 LLDs of 16 kHz samples.

        Args:
            samples: 1-D float samples in [-1, 1] at 16 kHz.
            source: name used in error messages.

        Returns:
            ``(ceil(len(samples) / 640), 76)`` float32, columns :data:`LLD_NAMES`.

        Raises:
            MediaError: ``samples`` is not 1-D or holds NaN or infinity.
        """
        samples = checked_samples(samples, source)
        frames = -(-samples.size // FRAME_SAMPLES)
        if frames == 0:
            return np.zeros((0, len(LLD_NAMES)), np.float32)
        reach = PITCH_WINDOWS[self.pitch_window] - FRAME_SAMPLES
        padded = np.zeros(frames * FRAME_SAMPLES + reach, np.float32)
        padded[: samples.size] = samples
        table = self._process(padded, source)
        if table.shape[0] < frames:
            raise MediaError(
                f"{source}: openSMILE returned {table.shape[0]} frames for {frames} grid frames"
            )
        return table[:frames]


    def feature_names(self) -> tuple[str, ...]:
        """The column names openSMILE itself reports (checked equal to :data:`LLD_NAMES` on creation)."""
        if self._smile is not None:
            return tuple(self._smile.feature_names)
        with tempfile.TemporaryDirectory(prefix="emorec-opensmile-") as tmp:
            back = Path(tmp) / "names.txt"
            self._child(["names", str(back), self.pitch_window], "feature names")
            return tuple(back.read_text().splitlines())

    def _process(self, padded: np.ndarray, source: str) -> np.ndarray:
        if self._smile is not None:
            return self._smile.process_signal(padded, SAMPLE_RATE).to_numpy(dtype=np.float32)
        with tempfile.TemporaryDirectory(prefix="emorec-opensmile-") as tmp:
            given, back = Path(tmp) / "samples.npy", Path(tmp) / "lld.npy"
            np.save(given, padded)
            self._child(["lld", str(given), str(back), self.pitch_window], source)
            return np.load(back)

    @staticmethod
    def _child(argv: list[str], source: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "emorec.features.opensmile_lld", *argv],
                              capture_output=True, text=True, env=dict(os.environ))
        if proc.returncode != 0:
            raise MediaError(f"{source}: openSMILE failed in its worker process: {proc.stderr.strip()[-500:]}")


def _worker(argv: list[str]) -> int:
    """Child process (never imports TensorFlow): ``lld IN.npy OUT.npy PITCH`` or ``names OUT.txt PITCH``."""
    if argv[0] == "names":
        _, back, pitch_window = argv
        Path(back).write_text("\n".join(OpensmileLLD(pitch_window).feature_names()))
        return 0
    _, given, back, pitch_window = argv
    extractor = OpensmileLLD(pitch_window)
    np.save(back, extractor._process(np.load(given), given))
    return 0


def opensmile_lld(
    samples: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    pitch_window: str = DEFAULT_PITCH_WINDOW,
) -> np.ndarray:
    """The 76 IS10 LLDs computed by openSMILE, same names and shape as ``extract_audio_lld``.

    Args:
        samples: 1-D float samples in [-1, 1].
        sample_rate: must be 16000, the rate of emorec's frame grid.
        pitch_window: ``frame`` (40 ms pitch frames, default) or ``is10`` (60 ms).

    Returns:
        ``(ceil(len(samples) / 640), 76)`` float32, columns :data:`LLD_NAMES`.

    Raises:
        OpensmileMissingError: the opensmile package is not installed
            (``pip install emorec[opensmile]``; research / non-commercial licence).
        ConfigError: ``sample_rate`` is not 16000 or ``pitch_window`` is unknown.
        MediaError: ``samples`` is not 1-D or holds NaN or infinity.
    """
    if sample_rate != SAMPLE_RATE:
        raise ConfigError(
            f"opensmile_lld: LLDs are computed at {SAMPLE_RATE} Hz, got {sample_rate} Hz"
        )
    return _extractor(pitch_window)(samples)


@functools.lru_cache(maxsize=len(PITCH_WINDOWS))
def _extractor(pitch_window: str) -> OpensmileLLD:
    return OpensmileLLD(pitch_window)


def is_available() -> bool:
    """Whether the optional ``opensmile`` package can be imported.

    Returns:
        True when ``import opensmile`` succeeds.
    """
    try:
        _import_opensmile()
    except OpensmileMissingError:
        return False
    return True


__all__ = [
    "ALL_LLD_LEVEL",
    "INSTALL_HINT",
    "OpensmileLLD",
    "OpensmileMissingError",
    "config_path",
    "is_available",
    "opensmile_lld",
    "patch_config",
]


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))

"""The feature sets a build can store, and the settings of the ones it computes from the media.

Two kinds (``emorec build ... --features`` and ``--extract``):

- **released**: ARFF feature files shipped with a corpus (RECOLA's
  ``SRC/features_<name>/``, :mod:`emorec.features.arff`), stored as the file
  has them;
- **extracted** at build time from the recording's media, one of
  :data:`EXTRACTED_SETS`:

  ===================== ===== ============================================================
  set                   dims  what
  ===================== ===== ============================================================
  ``audio_lld``         76    the IS10 / emobase2010 LLDs and deltas per 40 ms frame
                              (:mod:`emorec.features.audio_lld`)
  ``audio_functionals`` 1064  14 functionals of those 76 tracks over 3 s windows shifted
                              by one frame (:mod:`emorec.features.functionals`)
  ``video_geometric``   286   dlib's 68 points, 49 Procrustes-aligned to a mean shape fitted
                              on the training partition, distances and angles
                              (:mod:`emorec.features.geometric`)
  ``video_appearance``  84    LGBP-TOP of the face crops reduced by a PCA fitted on the
                              training partition (:mod:`emorec.features.lgbp_top`)
  ===================== ===== ============================================================

:class:`FeatureOptions` holds what a build asks for and how the extracted
sets are computed; everything but the dlib model's path is stored in the
manifest's options, so a build with other settings is another dataset.

Defaults of the audio LLDs (``feature_lstm``'s choice; see docs/feature_lstm.md):
``loudness="opensmile"`` and ``pitch_window="is10"``, what openSMILE's
emobase2010 / IS10 configuration (the code Chen & Jin ran, modified to 40 ms
frames and shift) computes: its ``pcm_loudness`` takes each frame's first
sample only, and its pitch framer keeps IS10's 60 ms window (which finds F0
down to ~100 Hz; a 40 ms window loses most voices below ~180 Hz). The
paper's readings are named options: ``loudness="frame"`` (Table 1's
"normalized intensity raised to a power of 0.3" of the whole frame) and
``pitch_window="frame"`` ("40ms frame window" read literally for pitch too).
"""

from __future__ import annotations

import dataclasses

from emorec.errors import ConfigError

AUDIO_SETS = ("audio_lld", "audio_functionals")
VIDEO_SETS = ("video_geometric", "video_appearance")
EXTRACTED_SETS = AUDIO_SETS + VIDEO_SETS
FILL_MODES = ("error", "zero")
FUNCTIONAL_WINDOW_MODES = ("centred", "causal")
# Where the models fitted on the training partition are stored, inside the dataset.
MODELS_DIR = "feature_models"
MEAN_SHAPE_FILE = f"{MODELS_DIR}/video_geometric_mean_shape.npz"
PCA_FILE = f"{MODELS_DIR}/video_appearance_pca.npz"


def parse_set_list(text: str, what: str = "--features") -> tuple[str, ...]:
    """``"a,b"`` -> ``("a", "b")`` (blanks dropped, each name once, in order).

    Args:
        text: the comma-separated names.
        what: the option named in error messages.

    Returns:
        The names, deduplicated in first-seen order.

    Raises:
        ConfigError: no name, or a name that cannot name a feature set.

    >>> parse_set_list("audio_lld, video_geometric,audio_lld")
    ('audio_lld', 'video_geometric')
    """
    from emorec.schema import SchemaError, check_feature_set_name

    names = tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    if not names:
        raise ConfigError(f"{what}: expected a comma-separated list of feature set names, got {text!r}")
    for name in names:
        try:
            check_feature_set_name(name)
        except SchemaError as exc:
            raise ConfigError(f"{what}: {exc}") from None
    return names


@dataclasses.dataclass(frozen=True)
class FeatureOptions:
    """Feature sets a build stores and how the extracted ones are computed (see the module docstring).

    Args:
        released: released feature folders to read (``audio`` for ``features_audio/``...).
        extract: sets computed from the media, from :data:`EXTRACTED_SETS`.
        fill: NaN or inf in a released file: ``error`` (default) or ``zero`` (the paper's padding).
        loudness: ``audio_lld`` loudness, ``opensmile`` or ``frame``.
        pitch_window: ``audio_lld`` pitch window, ``is10`` (60 ms) or ``frame`` (40 ms).
        functionals_seconds: window of ``audio_functionals`` (3 s: AVEC 2015's long-time features).
        functionals_mode: ``centred`` or ``causal`` window placement.
        lgbp_wavelengths, lgbp_orientations, lgbp_grid, lgbp_block: the LGBP-TOP settings.
        pca_dims: ``video_appearance`` dimensions after the PCA (84 as AVEC 2015).
        pca_stride: training frames between the frames the PCA is fitted on.
        pca_max_frames: at most this many frames for the PCA fit (evenly spaced).
        dlib_model: the shape predictor file (None: Debian's or ``$EMOREC_DLIB_SHAPE_PREDICTOR``);
            not stored in the manifest (the same model in another place is the same build).
    """

    released: tuple[str, ...] = ()
    extract: tuple[str, ...] = ()
    fill: str = "error"
    loudness: str = "opensmile"
    pitch_window: str = "is10"
    functionals_seconds: float = 3.0
    functionals_mode: str = "centred"
    lgbp_wavelengths: tuple[float, ...] = (4.0, 8.0)
    lgbp_orientations: int = 4
    lgbp_grid: int = 4
    lgbp_block: int = 5
    pca_dims: int = 84
    pca_stride: int = 20
    pca_max_frames: int = 3000
    dlib_model: str | None = None

    def __post_init__(self):
        from emorec.features.audio_lld import LOUDNESS_MODES, PITCH_WINDOWS

        object.__setattr__(self, "released", tuple(self.released))
        object.__setattr__(self, "extract", tuple(self.extract))
        object.__setattr__(self, "lgbp_wavelengths", tuple(float(w) for w in self.lgbp_wavelengths))
        unknown = [name for name in self.extract if name not in EXTRACTED_SETS]
        if unknown:
            raise ConfigError(
                f"--extract: unknown feature set(s) {', '.join(unknown)} (emorec computes "
                f"{', '.join(EXTRACTED_SETS)}; released ARFF folders are read with --features)"
            )
        for what, value, allowed in (
            ("--fill", self.fill, FILL_MODES),
            ("--lld-loudness", self.loudness, LOUDNESS_MODES),
            ("--lld-pitch-window", self.pitch_window, tuple(PITCH_WINDOWS)),
            ("--functionals-mode", self.functionals_mode, FUNCTIONAL_WINDOW_MODES),
        ):
            if value not in allowed:
                raise ConfigError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
        from emorec.schema import FRAME_PERIOD

        frames = self.functionals_seconds / FRAME_PERIOD
        if not (frames >= 1 and abs(frames - round(frames)) < 1e-6):
            raise ConfigError(
                f"--functionals-window must be a positive multiple of {FRAME_PERIOD} s, got {self.functionals_seconds}"
            )
        for what, value in (("pca_dims", self.pca_dims), ("pca_stride", self.pca_stride),
                            ("pca_max_frames", self.pca_max_frames)):
            if not (isinstance(value, int) and value >= 1):
                raise ConfigError(f"{what} must be a positive integer, got {value!r}")
        self.lgbp_config()  # checks the LGBP-TOP settings

    @property
    def requested(self) -> bool:
        """True when the build stores any feature set."""
        return bool(self.released or self.extract)

    @property
    def needs_audio(self) -> bool:
        """An extracted set reads the audio."""
        return any(name in AUDIO_SETS for name in self.extract)

    @property
    def needs_video(self) -> bool:
        """An extracted set reads the video (and its face track)."""
        return any(name in VIDEO_SETS for name in self.extract)

    @property
    def functionals_frames(self) -> int:
        """Frames in the functionals' window (75 for 3 s)."""
        from emorec.schema import FRAME_PERIOD

        return int(round(self.functionals_seconds / FRAME_PERIOD))

    def lgbp_config(self):
        """The :class:`~emorec.features.lgbp_top.LgbpTopConfig` of these settings."""
        from emorec.features.lgbp_top import LgbpTopConfig

        return LgbpTopConfig(wavelengths=self.lgbp_wavelengths, orientations=self.lgbp_orientations,
                             grid=self.lgbp_grid, block=self.lgbp_block)

    def manifest_options(self) -> dict:
        """The manifest's ``features`` option: only the settings of the sets asked for."""
        out: dict = {"released": list(self.released), "extract": list(self.extract)}
        if self.released:
            out["fill"] = self.fill
        if "audio_lld" in self.extract or "audio_functionals" in self.extract:
            out["audio_lld"] = {"loudness": self.loudness, "pitch_window": self.pitch_window}
        if "audio_functionals" in self.extract:
            out["audio_functionals"] = {"seconds": float(self.functionals_seconds), "mode": self.functionals_mode}
        if "video_appearance" in self.extract:
            out["video_appearance"] = {"lgbp_top": self.lgbp_config().to_dict(), "pca_dims": self.pca_dims,
                                       "pca_stride": self.pca_stride, "pca_max_frames": self.pca_max_frames}
        return out


def extracted_set_info(name: str, options: FeatureOptions):
    """The :class:`~emorec.manifest.FeatureSetInfo` of extracted set ``name`` (dimension and column names).

    Args:
        name: one of :data:`EXTRACTED_SETS`.
        options: the feature options (``pca_dims`` sizes ``video_appearance``).

    Returns:
        The info with ``source`` = ``name``, the column names, and the model file stored with
        the dataset (mean shape, PCA) or None.

    Raises:
        ConfigError: an unknown set name.

    >>> extracted_set_info("video_geometric", FeatureOptions()).dim
    286
    """
    from emorec.manifest import FeatureSetInfo

    if name == "audio_lld":
        from emorec.features.audio_lld import LLD_NAMES

        names, model = list(LLD_NAMES), None
    elif name == "audio_functionals":
        from emorec.features.functionals import functional_names

        names, model = list(functional_names()), None
    elif name == "video_geometric":
        from emorec.features.geometric import FEATURE_NAMES

        names, model = list(FEATURE_NAMES), MEAN_SHAPE_FILE
    elif name == "video_appearance":
        names, model = [f"pca_{k}" for k in range(options.pca_dims)], PCA_FILE
    else:
        raise ConfigError(f"unknown extracted feature set {name!r} (known: {', '.join(EXTRACTED_SETS)})")
    return FeatureSetInfo(name=name, dim=len(names), source=name, names=names, model=model)

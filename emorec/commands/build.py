"""``emorec build {recola,manifest,demo,afew,clips} ... OUT``: turn a corpus into an emorec TFRecord dataset.

``afew`` and ``clips`` build clip datasets (one record per video clip,
``clips_manifest.json``; docs/clip_data.md) for the clip classification models
(Pini et al., ``emotiw*``); the others windowed datasets:

One shard per recording, ``OUT/<partition>/<recording_id>.tfrecord``, each
written to a temporary name and renamed when complete; ``OUT/manifest.json``
is rewritten atomically after every recording, so a killed build keeps its
finished recordings, and says "complete": false (with the missing recordings)
until the last one is written. A rerun skips recordings whose shard matches
the manifest (size and SHA-256) under the same options, removes temporary
files left by a killed run and rebuilds whatever is missing or damaged.
One build at a time per OUT (OUT/.emorec-build.lock names its holder).
Audio outside [-1, 1] (beyond --audio-peak-limit), labels outside
--label-range, NaN or inf anywhere stop the build naming the file and time.

Feature sets (feature_lstm): --features audio,video_geometric,ECG,... reads
RECOLA's released ARFF folders SRC/features_<name>/ (recola layout;
features_audio/ gives audio_arousal and audio_valence); --extract
audio_lld,audio_functionals,video_geometric,video_appearance computes them
from the media (any layout; the video sets fit their mean shape / PCA on the
train partition and store it in OUT/feature_models/). --modalities none
stores the feature sets alone. Released files are checked before anything
is written. See docs/feature_lstm.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

DESCRIPTION = "Build an emorec TFRecord dataset (one shard per recording, manifest.json)."
EPILOG = __doc__.split("\n", 2)[2]

logger = logging.getLogger(__name__)


def _modalities(text: str) -> tuple[str, ...]:
    from emorec.schema import MODALITIES

    if text.strip() == "none":
        return ()
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in MODALITIES]
    if bad or not parts:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a comma-separated subset of {','.join(MODALITIES)}"
        )
    return parts


def _label_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOW,HIGH, e.g. --label-range=-5,5") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"{text!r}: LOW must be below HIGH")
    return low, high


def _common_options() -> argparse.ArgumentParser:
    from emorec.manifest import DEFAULT_LABEL_RANGE
    from emorec.recording import DEFAULT_AUDIO_PEAK_LIMIT, DEFAULT_TOLERANCE_S, DEFAULT_WINDOW_S
    from emorec.schema import (
        DEFAULT_FACE_SIZE,
        DEFAULT_LABEL_ALIGNMENT,
        LABEL_ALIGNMENTS,
        MODALITIES,
    )

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--window", type=float, default=DEFAULT_WINDOW_S,
                        help="window length in seconds, a multiple of 0.04 (default 6.0 = 150 frames)")
    common.add_argument("--hop", type=float, default=None,
                        help="seconds between window starts (default: the window, no overlap)")
    common.add_argument("--face-size", type=int, default=DEFAULT_FACE_SIZE,
                        help="face crop side in pixels (default %(default)s)")
    common.add_argument("--audio-norm", choices=("none", "recording"), default="none",
                        help="none = raw waveform as the original code (default); "
                             "recording = zero mean, unit variance per recording as the paper")
    common.add_argument("--label-alignment", choices=LABEL_ALIGNMENTS, default=DEFAULT_LABEL_ALIGNMENT,
                        help="end = label at the frame's end time as the original code (default); "
                             "start = at its start time as End2You")
    common.add_argument("--modalities", type=_modalities, default=MODALITIES,
                        help="audio,video (default), audio, video, or none (feature sets alone)")
    common.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_S,
                        help="largest length difference (s) between audio, video and labels that "
                             "is trimmed or padded rather than an error (default %(default)s)")
    common.add_argument("--label-range", type=_label_range, default=DEFAULT_LABEL_RANGE, metavar="LOW,HIGH",
                        help="the range labels must lie in, else the build stops (default -1,1 as "
                             "RECOLA's gold standard; write --label-range=-5,5 for negative LOW)")
    common.add_argument("--audio-peak-limit", type=float, default=DEFAULT_AUDIO_PEAK_LIMIT,
                        metavar="PEAK",
                        help="with --audio-norm none, the largest |sample| accepted; peaks above "
                             "1.0 up to it are reported (default %(default)s)")
    common.add_argument("--jobs", type=int, default=1,
                        help="recordings built in parallel processes (default 1)")
    common.add_argument("--force", action="store_true",
                        help="delete this dataset's shards and manifest and rebuild everything")
    common.add_argument("--cache-dir", type=Path, default=None,
                        help="face detection cache (default OUT/.cache/faces)")
    common.add_argument("--face-detect-every", type=int, default=None,
                        help="run the face detector every K frames, interpolating between "
                             "(default: the face tracker's own)")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    _feature_options(common)
    return common


def _feature_options(common: argparse.ArgumentParser) -> None:
    from emorec.features.sets import EXTRACTED_SETS, FeatureOptions

    defaults = FeatureOptions()
    group = common.add_argument_group("feature sets (feature_lstm; see docs/feature_lstm.md)")
    group.add_argument("--features", default=None, metavar="NAMES",
                       help="released ARFF feature folders to store, e.g. audio,video_geometric,ECG "
                            "(recola layout: SRC/features_<name>/)")
    group.add_argument("--extract", default=None, metavar="NAMES",
                       help=f"feature sets computed from the media: {','.join(EXTRACTED_SETS)}")
    group.add_argument("--fill", choices=("error", "zero"), default=defaults.fill,
                       help="NaN or inf in a released file: error (default) or zero (the paper's padding)")
    group.add_argument("--lld-loudness", choices=("opensmile", "frame"), default=defaults.loudness,
                       help="audio_lld loudness: opensmile = what openSMILE computes (each frame's first "
                            "sample; default), frame = the whole frame (the paper's Table 1)")
    group.add_argument("--lld-pitch-window", choices=("is10", "frame"), default=defaults.pitch_window,
                       help="audio_lld pitch window: is10 = 60 ms as openSMILE's IS10 config (default), "
                            "frame = the 40 ms frame (loses voices below ~180 Hz)")
    group.add_argument("--functionals-window", type=float, default=defaults.functionals_seconds, metavar="S",
                       help="audio_functionals window in seconds (default %(default)s)")
    group.add_argument("--pca-dims", type=int, default=defaults.pca_dims,
                       help="video_appearance dimensions after the PCA (default %(default)s)")
    group.add_argument("--dlib-model", default=None, metavar="FILE",
                       help="dlib's shape_predictor_68_face_landmarks.dat (default: Debian's libdlib-data "
                            "copy or $EMOREC_DLIB_SHAPE_PREDICTOR; never downloaded)")


def feature_options_from_args(args):
    """:class:`~emorec.features.sets.FeatureOptions` from parsed arguments.

    Args:
        args: the parsed ``build`` arguments (``features``, ``extract``, ``fill``,
            ``lld_loudness``, ``lld_pitch_window``, ``functionals_window``, ``pca_dims``,
            ``dlib_model``).

    Returns:
        The feature options: released sets to read, sets to extract, and their settings.

    Raises:
        ConfigError: a malformed ``--features`` or ``--extract`` list, an unknown extracted
            set, or an invalid feature setting.
    """
    from emorec.features.sets import FeatureOptions, parse_set_list

    return FeatureOptions(
        released=parse_set_list(args.features, "--features") if args.features else (),
        extract=parse_set_list(args.extract, "--extract") if args.extract else (),
        fill=args.fill, loudness=args.lld_loudness, pitch_window=args.lld_pitch_window,
        functionals_seconds=args.functionals_window, pca_dims=args.pca_dims, dlib_model=args.dlib_model,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``build`` options: one sub-command per corpus layout.

    Args:
        parser: the :class:`argparse.ArgumentParser` of the ``build`` subcommand; changed in
            place (sub-commands ``recola``, ``manifest``, ``demo`` and the clip layouts).
    """
    from emorec.cli import _verbosity_options

    common = _common_options()
    parents = [common, _verbosity_options()]
    sub = parser.add_subparsers(dest="layout", required=True, metavar="LAYOUT")
    recola = sub.add_parser("recola", parents=parents, help="RECOLA as distributed for AVEC 2016")
    recola.add_argument("src", type=Path, help="RECOLA folder (recordings_audio/, recordings_video/, "
                                               "ratings_gold_standard/)")
    recola.add_argument("out", type=Path)
    recola.add_argument("--split", choices=("avec", "paper"), default="avec",
                        help="avec: partitions from the file names (default); paper: from --subject-map")
    recola.add_argument("--subject-map", type=Path, default=None,
                        help="CSV recording,subject[,partition]")
    manifest = sub.add_parser("manifest", parents=parents,
                              help="recordings listed in a CSV (recording,partition,subject,audio,video,labels)")
    manifest.add_argument("csv", type=Path)
    manifest.add_argument("out", type=Path)
    demo = sub.add_parser("demo", parents=parents, help="the synthetic demo corpus (written first)")
    demo.add_argument("out", type=Path)
    demo.add_argument("--media-dir", type=Path, default=None,
                      help="where the demo media are written (default OUT/.cache/demo_media/seed<SEED>)")
    demo.add_argument("--seed", type=int, default=0)
    _add_clip_layouts(sub)


def _clip_options() -> argparse.ArgumentParser:
    """The options of the clip layouts (``afew``, ``clips``)."""
    from emorec.clips.build import DEFAULT_CLIPS_PER_SHARD
    from emorec.clips.schema import CLIP_FACE_SIZE, CLIP_SAMPLE_RATE

    clip = argparse.ArgumentParser(add_help=False)
    clip.add_argument("--face-size", type=int, default=CLIP_FACE_SIZE,
                      help="face crop side in pixels (default %(default)s, FaceNet's input)")
    clip.add_argument("--sample-rate", type=int, default=CLIP_SAMPLE_RATE,
                      help="sound track rate in Hz (default %(default)s, SoundNet's)")
    clip.add_argument("--clips-per-shard", type=int, default=DEFAULT_CLIPS_PER_SHARD,
                      help="clips per TFRecord shard (default %(default)s)")
    clip.add_argument("--face-detect-every", type=int, default=None,
                      help="run the face detector every K frames, interpolating between (default 5)")
    clip.add_argument("--skip-bad", action="store_true",
                      help="list unreadable clips in the manifest and go on, instead of stopping")
    clip.add_argument("--jobs", type=int, default=1, help="shards built in parallel processes (default 1)")
    clip.add_argument("--force", action="store_true",
                      help="delete this dataset's shards and manifest and rebuild everything")
    clip.add_argument("--cache-dir", type=Path, default=None,
                      help="face detection cache (default OUT/.cache/faces-native)")
    clip.add_argument("--no-progress", action="store_true", help="no progress bars")
    return clip


def _add_clip_layouts(sub) -> None:
    from emorec.cli import _verbosity_options

    parents = [_clip_options(), _verbosity_options()]
    afew = sub.add_parser("afew", parents=parents,
                          help="AFEW as distributed: Train_AFEW/<Class>/*.avi, Val_AFEW/<Class>/*.avi, [Test_AFEW/]")
    afew.add_argument("src", type=Path, help="AFEW folder (Train_AFEW/, Val_AFEW/ or Train/, Val/; optional Test_AFEW/)")
    afew.add_argument("out", type=Path)
    clips = sub.add_parser("clips", parents=parents,
                           help="labelled clips listed in a CSV (clip,partition,subject,video,label)")
    clips.add_argument("csv", type=Path)
    clips.add_argument("out", type=Path)


def run_clip_build(args) -> int:
    """Build a clip dataset (``afew`` or ``clips`` layout); prints its path and summary.

    Args:
        args: the parsed ``build afew`` or ``build clips`` arguments.

    Returns:
        The exit status, 0 (failures raise instead).

    Raises:
        EmorecError: unusable sources, output folder or settings.
    """
    from emorec.clips.build import (
        ClipBuildOptions,
        build_clip_dataset,
        default_clip_face_config,
        summarize_clip_dataset,
    )

    face = default_clip_face_config()
    if args.face_detect_every is not None:
        face = dataclasses.replace(face, detect_every=args.face_detect_every)
    options = ClipBuildOptions(face_size=args.face_size, sample_rate=args.sample_rate,
                               clips_per_shard=args.clips_per_shard, face=face)
    if args.layout == "afew":
        from emorec.corpus.adapters.afew import afew_sources

        sources = afew_sources(args.src)
    else:
        from emorec.corpus.adapters.clips_csv import read_clips_csv

        sources = read_clips_csv(args.csv)
    manifest = build_clip_dataset(sources, args.out, options, args.layout, force=args.force, jobs=args.jobs,
                                  cache_dir=args.cache_dir, skip_bad=args.skip_bad, progress=progress(args))
    print(f"clip dataset: {Path(args.out).resolve()}")
    print(summarize_clip_dataset(manifest))
    return 0


def options_from_args(args):
    """:class:`~emorec.recording.BuildOptions` from parsed arguments.

    Args:
        args: the parsed ``build`` arguments of a recording layout.

    Returns:
        The build options (windowing, faces, audio, labels, modalities, feature sets).

    Raises:
        ConfigError: malformed feature set lists or invalid option values (e.g. no
            modality and no feature set, a face size under 8 pixels).
    """
    from emorec.media.faces import FaceConfig
    from emorec.recording import BuildOptions

    face = FaceConfig()
    if args.face_detect_every is not None:
        face = dataclasses.replace(face, detect_every=args.face_detect_every)
    return BuildOptions(
        window=args.window, hop=args.hop, face_size=args.face_size, audio_norm=args.audio_norm,
        label_alignment=args.label_alignment, modalities=args.modalities,
        tolerance_s=args.tolerance, face=face, label_range=args.label_range,
        audio_peak_limit=args.audio_peak_limit, features=feature_options_from_args(args),
    )


def sources_from_args(args, options) -> tuple[list, str]:
    """The recordings named on the command line, and the adapter's name.

    Args:
        args: the parsed ``build`` arguments (``recola``, ``manifest`` or ``demo`` layout).
        options: the build options (:func:`options_from_args`).

    Returns:
        ``(recording sources, adapter name)``; the ``demo`` layout writes its media first.

    Raises:
        ConfigError: ``--features`` outside the ``recola`` layout, or a ``demo`` output folder
            that holds something other than an emorec dataset.
        EmorecError: unreadable or inconsistent sources (from the adapter).
    """
    from emorec.corpus.build import check_not_foreign
    from emorec.errors import ConfigError

    if args.layout == "recola":
        from emorec.corpus.adapters.recola import recola_sources

        return recola_sources(args.src, args.split, args.subject_map, options.modalities,
                              features=options.features.released, reads_audio=options.reads_audio), "recola"
    if options.features.released:
        raise ConfigError(f"--features reads released ARFF folders of the recola layout, not of {args.layout}; "
                          "compute feature sets from the media with --extract")
    if args.layout == "manifest":
        from emorec.corpus.adapters.manifest_csv import read_recordings_csv

        return read_recordings_csv(args.csv), "manifest"
    from emorec.corpus.adapters.demo import default_media_dir, demo_sources

    check_not_foreign(Path(args.out))  # before writing the demo media into it
    media = args.media_dir or default_media_dir(args.out, args.seed)
    return demo_sources(media, seed=args.seed, progress=progress(args), jobs=args.jobs), "demo"


def progress(args) -> bool:
    """Progress bars unless ``--no-progress`` or ``--quiet``.

    Args:
        args: parsed arguments (``no_progress`` and ``quiet`` are read when present).

    Returns:
        Whether to show progress bars.

    >>> import argparse
    >>> progress(argparse.Namespace(no_progress=False)), progress(argparse.Namespace(quiet=True))
    (True, False)
    """
    return not (getattr(args, "no_progress", False) or getattr(args, "quiet", False))


def run(args) -> int:
    """Build the dataset; prints its path and the summary table.

    Args:
        args: the parsed ``build`` arguments (:func:`add_arguments`); ``afew`` and ``clips``
            go to :func:`run_clip_build`.

    Returns:
        The exit status, 0 (failures raise instead).

    Raises:
        EmorecError: unusable sources, output folder or settings.
    """
    from emorec.corpus.adapters import subjects_across_partitions
    from emorec.corpus.build import build_dataset, summarize

    if args.layout in ("afew", "clips"):
        return run_clip_build(args)
    options = options_from_args(args)
    sources, name = sources_from_args(args, options)
    for subject, parts in subjects_across_partitions(sources).items():
        logger.warning("subject %s is in partitions %s", subject, ", ".join(parts))
    manifest = build_dataset(
        sources, args.out, options, name, force=args.force, jobs=args.jobs,
        cache_dir=args.cache_dir, progress=progress(args), root=getattr(args, "src", None),
    )
    print(f"dataset: {Path(args.out).resolve()}")
    print(summarize(manifest))
    return 0

"""Feature sets in a build: released ARFF files checked up front, media-derived sets fitted and computed.

:func:`emorec.corpus.build.build_dataset` calls, in this order:

1. :func:`check_feature_inputs` before anything is written: every released
   file of every recording is read and checked (header, numbers, NaN/inf as
   ``fill`` says, the same features in every recording of a set, rows on the
   40 ms grid and as long as the labels within the tolerance), and the dlib
   model is loaded when ``video_geometric`` is asked for. So a bad file stops
   the build with exit status 2 and nothing half-written.
2. :func:`feature_models`: the models the video sets need, fitted on the
   training partition (the 49-point mean shape of ``video_geometric``, the
   PCA of ``video_appearance``) and stored with the dataset under
   ``feature_models/``; a resumed build reuses them.
3. :func:`recording_features` per recording, in the build's worker: the
   ``(N, D)`` rows of every set on the recording's frame grid (released rows
   matched by ``frameTime``; extracted rows computed from the audio and the
   face track), with report lines.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import multiprocessing
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError, MediaError
from emorec.features.sets import MEAN_SHAPE_FILE, PCA_FILE, FeatureOptions, extracted_set_info
from emorec.manifest import FeatureSetInfo, file_sha256
from emorec.schema import FRAME_PERIOD, FRAME_SAMPLES, SAMPLE_RATE

logger = logging.getLogger(__name__)

# Audio samples decoded at a time for the LLDs (10 s).
_AUDIO_BLOCK = 250 * FRAME_SAMPLES


# -- released sets ---------------------------------------------------------------------------


def discover_released(src, requested: Sequence[str]) -> dict[str, dict[str, Path]]:
    """:func:`emorec.features.arff.discover_feature_sets`, with a hint when a name is one emorec computes.

    Args:
        src: the corpus folder holding ``features_<name>/`` folders.
        requested: the feature set names to find.

    Returns:
        ``{set name: {recording id (file stem): path}}`` in request order.

    Raises:
        ConfigError: a requested folder that does not exist (listing those that do).
    """
    from emorec.features.arff import discover_feature_sets
    from emorec.features.sets import EXTRACTED_SETS

    try:
        return discover_feature_sets(src, list(requested))
    except ConfigError as exc:
        computed = [name for name in requested if name in EXTRACTED_SETS]
        hint = (f"; {', '.join(computed)} {'is' if len(computed) == 1 else 'are'} computed from the media: "
                f"use --extract {','.join(computed)}") if computed else ""
        raise ConfigError(f"{exc}{hint}") from None


def attach_released_files(sources, src, requested: Sequence[str]) -> list[str]:
    """Find the released feature files of every recording and set ``source.features`` (``{set: path}``).

    Args:
        sources: the corpus's recordings (:class:`~emorec.recording.RecordingSource`).
        src: the corpus folder holding ``features_<name>/``.
        requested: folder names without ``features_`` (``audio`` gives ``audio_arousal`` and
            ``audio_valence`` when it has those sub-folders).

    Returns:
        The set names, in request order.

    Raises:
        ConfigError: a requested folder that does not exist (listing those that do), or one without
            ARFF files.
        MediaError: a recording without its file in a set (naming the file expected).
    """
    sets = discover_released(src, requested)
    for name, files in sets.items():
        folder = next(iter(files.values())).parent
        for source in sources:
            path = files.get(source.recording_id)
            if path is None:
                raise MediaError(
                    f"{folder / (source.recording_id + '.arff')}: no such file; feature set {name} has no "
                    f"features for recording {source.recording_id} ({len(files)} files in {folder})"
                )
            source.features = {**(source.features or {}), name: path}
    return list(sets)


def _released_names(sources) -> list[str]:
    names: list[str] = []
    for source in sources:
        for name in source.features or {}:
            if name not in names:
                names.append(name)
    return names


def released_set_infos(sources, options: FeatureOptions, label_alignment: str, tolerance_s: float,
                       root=None) -> dict[str, FeatureSetInfo]:
    """Read and check every released file of every recording (see the module docstring); their infos.

    Args:
        sources: recordings with ``features`` attached (:func:`attach_released_files`).
        options: the build's feature options (``fill``).
        label_alignment: how frames meet label times (the features share the labels' grid).
        tolerance_s: the build's length tolerance.
        root: the corpus folder, to store the files' paths relative to it.

    Returns:
        ``{set: FeatureSetInfo}`` in the order the sets were requested.

    Raises:
        MediaError, AlignmentError: a bad file (named, with its line or frames), a recording whose
            file is missing, features differing between recordings, rows off the labels' length.
    """
    from emorec.features.arff import align_features, read_feature_arff
    from emorec.recording import label_frames, label_track

    infos: dict[str, FeatureSetInfo] = {}
    first: dict[str, tuple] = {}
    for source in sources:
        labels = label_track(source)
        for name in _released_names(sources):
            path = (source.features or {}).get(name)
            if path is None:
                raise MediaError(f"recording {source.recording_id}: no file for released feature set {name}")
            table = read_feature_arff(path, fill=options.fill)
            if name not in first:
                first[name] = (table.path, table.names)
            elif table.names != first[name][1]:
                other_path, other = first[name]
                if len(table.names) != len(other):
                    raise MediaError(
                        f"{table.path}: {len(table.names)} features, but {other_path} has {len(other)} "
                        f"(every recording of feature set {name} must have the same)")
                k = next(i for i, (a, b) in enumerate(zip(table.names, other)) if a != b)
                raise MediaError(
                    f"{table.path}: feature {k + 1} is {table.names[k]!r}, {other_path} has {other[k]!r} "
                    f"there (feature set {name})")
            if labels is not None:
                frames = label_frames(np.asarray(labels.times, dtype=np.float64), label_alignment)
                align_features(table, frames, label_alignment, tolerance_s, source.recording_id,
                               ("labels", source.label_source or str(source.labels)))
            if name not in infos:
                folder = Path(table.path).parent
                try:
                    where = str(folder.relative_to(root)) if root is not None else str(folder)
                except ValueError:
                    where = str(folder)
                infos[name] = FeatureSetInfo(name=name, dim=table.dim, source="released",
                                             names=list(table.names), path=where)
    return infos


def check_feature_inputs(sources, options: FeatureOptions, label_alignment: str, tolerance_s: float,
                         root=None) -> dict[str, FeatureSetInfo]:
    """Everything about the feature sets that can be checked before a build writes anything.

    Args:
        sources: the recordings to build, with released files attached.
        options: the build's feature options (``extract``, ``released``, ``dlib_model``,
            ``fill``).
        label_alignment: how frames meet label times (the features share the labels' grid).
        tolerance_s: the build's length tolerance.
        root: the corpus folder, to store the files' paths relative to it.

    Returns:
        The released sets' infos (``{}`` when there are none).

    Raises:
        ConfigError: dlib or its model missing or not a 68-point shape predictor (``video_geometric``),
            a released set asked for that no recording has.
        MediaError, AlignmentError: a bad released file (see :func:`released_set_infos`).
    """
    if "video_geometric" in options.extract:
        _landmark_predictor(options.dlib_model)
    if options.released and not _released_names(sources):
        raise ConfigError(
            f"released feature sets {', '.join(options.released)} were asked for, but no recording has "
            "feature files (only the recola layout reads SRC/features_<name>/)")
    infos = released_set_infos(sources, options, label_alignment, tolerance_s, root)
    clash = [name for name in infos if name in options.extract]
    if clash:
        raise ConfigError(
            f"feature set {', '.join(clash)} is both released (--features) and computed (--extract); a "
            "dataset holds one set of each name: build two datasets to compare them")
    return infos


# -- the models fitted on the training partition ----------------------------------------------


@dataclasses.dataclass
class FeatureModels:
    """The video sets' models: the 49-point mean shape and the LGBP-TOP PCA (None when not needed)."""

    mean_shape: np.ndarray | None = None
    pca: object = None  # emorec.features.lgbp_top.PCAModel


@functools.lru_cache(maxsize=2)
def _landmark_predictor(model):
    from emorec.features.landmarks68 import LandmarkPredictor

    return LandmarkPredictor(model)


def _video_frames(source, num_frames: int, face_config, cache_dir, progress: bool):
    """``(grid frame RGB, face box, found)`` per frame of the recording's video, and the track."""
    from emorec.media.faces import load_or_track_faces
    from emorec.media.video import iter_grid_frames

    track = load_or_track_faces(source.video, face_config, cache_dir, progress=progress)
    last = len(track.found) - 1

    def frames():
        for i, image in enumerate(iter_grid_frames(source.video, num_frames)):
            j = min(i, last)
            yield image, np.asarray(track.boxes[j], dtype=np.float64), int(track.found[j])

    return frames(), track


def _crop(image, box, size: int) -> np.ndarray:
    from emorec.media.faces import crop_face

    if not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        return np.zeros((size, size, 3), np.uint8)
    return crop_face(image, box, np.zeros((0, 2)), size)[0]


def _landmarks(predictor, image, box, found: int) -> tuple[np.ndarray, int]:
    from emorec.features.landmarks68 import NUM_POINTS, predictor_box

    if not found or not np.all(np.isfinite(box)) or box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return np.zeros((NUM_POINTS, 2), np.float32), 0
    return predictor.predict(image, predictor_box(box)).astype(np.float32), 1


def sampled_lgbp_vectors(lgbp, crops, keep) -> np.ndarray:
    """LGBP-TOP vectors of the frames ``keep(i)`` selects, each from its few neighbours only.

    A frame's vector depends on the frames within ``block // 2 + 1`` of it, so
    running the extractor on that clip alone gives exactly the vector of the
    whole sequence (at the ends too: the clip then stops where the recording
    does). With sparse samples this costs ``block + 2`` frames per sample
    instead of every frame.

    Args:
        lgbp: the :class:`~emorec.features.lgbp_top.LgbpTop` extractor.
        crops: the face crops of consecutive frames (any iterable; read once).
        keep: ``keep(i) -> bool``, asked once frame ``i`` and its neighbours are known.

    Returns:
        ``(samples, dim)`` float32 in frame order.
    """
    from collections import deque

    reach = lgbp.config.block // 2 + 1
    window: deque = deque(maxlen=2 * reach + 1)  # frames i - 2 reach .. i
    out = []

    def sample(t: int, first: int) -> None:
        if keep(t):
            clip = list(window)[max(0, t - reach - first): t + reach + 1 - first]
            offset = t - max(first, t - reach)
            out.append(lgbp.transform(clip)[offset])

    count = 0
    for i, crop in enumerate(crops):
        window.append(crop)
        count = i + 1
        t = i - reach
        if t >= 0:
            sample(t, i + 1 - len(window))
    for t in range(max(0, count - reach), count):
        sample(t, count - len(window))
    return np.stack(out) if out else np.zeros((0, lgbp.dim), np.float32)


def _fit_inputs(source, options: FeatureOptions, face_config, face_size: int, cache_dir, progress: bool,
                stride: int = 1):
    """One training recording's landmarks (all frames) and LGBP-TOP vectors (every ``stride``-th face)."""
    from emorec.features.lgbp_top import LgbpTop
    from emorec.media.video import count_grid_frames

    num_frames = count_grid_frames(source.video)
    frames, _ = _video_frames(source, num_frames, face_config, cache_dir, progress)
    predictor = _landmark_predictor(options.dlib_model) if "video_geometric" in options.extract else None
    lgbp = LgbpTop(options.lgbp_config()) if "video_appearance" in options.extract else None
    points, found = [], []

    def crops_of():
        for image, box, ok in frames:
            if predictor is not None:
                p, f = _landmarks(predictor, image, box, ok)
                points.append(p)
                found.append(f)
            else:
                found.append(ok)
            yield _crop(image, box, face_size)

    vectors = None
    if lgbp is not None:
        vectors = sampled_lgbp_vectors(lgbp, crops_of(), lambda t: t % stride == 0 and found[t] > 0)
    else:
        for _ in crops_of():
            pass
    landmarks = np.stack(points) if points else None
    return landmarks, np.asarray(found, np.int8), vectors


def feature_models(sources, options: FeatureOptions, out: Path, face_config, face_size: int, cache_dir,
                   jobs: int = 1, progress: bool = True) -> tuple[FeatureModels, dict[str, str]]:
    """The video sets' models: read from ``out/feature_models/`` or fitted on the training partition and saved there.

    Args:
        sources: every recording of the build (the training ones are fitted on).
        options: the feature options.
        out: the dataset directory.
        face_config: the face tracker's settings (the face track is cached and shared with the build).
        face_size: the side of the face crops LGBP-TOP reads.
        cache_dir: the face detection cache.
        jobs: training recordings processed in parallel.
        progress: progress bars.

    Returns:
        ``(models, {set: sha256 of its model file})``.

    Raises:
        ConfigError: no training recording with video, or too few faces for the PCA.
    """
    from emorec.features.geometric import fit_mean_shape, load_mean_shape, save_mean_shape
    from emorec.features.lgbp_top import PCAModel, fit_pca

    wanted = [name for name in ("video_geometric", "video_appearance") if name in options.extract]
    models = FeatureModels()
    if not wanted:
        return models, {}
    files = {"video_geometric": out / MEAN_SHAPE_FILE, "video_appearance": out / PCA_FILE}
    if all(files[name].is_file() for name in wanted):
        if "video_geometric" in wanted:
            models.mean_shape = load_mean_shape(files["video_geometric"])
        if "video_appearance" in wanted:
            models.pca = PCAModel.load(files["video_appearance"])
        logger.info("feature models: using %s", ", ".join(str(files[n]) for n in wanted))
        return models, {name: file_sha256(files[name]) for name in wanted}
    train = [s for s in sources if s.partition == "train"]
    if not train or any(s.video is None for s in train):
        raise ConfigError(
            f"{out}: {', '.join(wanted)} fit their model on the training partition's videos, and the build "
            f"has {'no training recording' if not train else 'training recordings without video'}")
    from emorec.media.video import count_grid_frames

    # Every pca_stride-th frame, fewer when the training videos hold more than pca_max_frames of them.
    total = sum(count_grid_frames(s.video) for s in train)
    stride = max(options.pca_stride, -(-total // options.pca_max_frames))
    logger.info("feature models: fitting %s on %d training recordings (PCA on every %d-th frame)",
                ", ".join(wanted), len(train), stride)
    run = functools.partial(_fit_inputs, options=options, face_config=face_config, face_size=face_size,
                            cache_dir=cache_dir, progress=False, stride=stride)
    if jobs > 1 and len(train) > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(jobs, len(train)), mp_context=context) as pool:
            parts = list(pool.map(run, train))
    else:
        parts = [run(source) for source in train]
    (out / MEAN_SHAPE_FILE).parent.mkdir(parents=True, exist_ok=True)
    if "video_geometric" in wanted:
        landmarks = np.concatenate([p[0] for p in parts])
        found = np.concatenate([p[1] for p in parts])
        if found.sum() < 1:
            raise ConfigError(f"{out}: no face found in the training videos; cannot fit the mean shape")
        models.mean_shape = fit_mean_shape(landmarks, found)
        save_mean_shape(files["video_geometric"], models.mean_shape)
    if "video_appearance" in wanted:
        vectors = np.concatenate([p[2] for p in parts])
        if len(vectors) < options.pca_dims:
            raise ConfigError(
                f"{out}: video_appearance's PCA to {options.pca_dims} dimensions needs at least that many "
                f"training frames with a face every {stride} frames, found {len(vectors)}; lower "
                "--pca-dims")
        models.pca = fit_pca(vectors, options.pca_dims, max_samples=options.pca_max_frames)
        models.pca.save(files["video_appearance"])
    return models, {name: file_sha256(files[name]) for name in wanted}


def feature_set_infos(options: FeatureOptions, released: dict[str, FeatureSetInfo],
                      model_sha: dict[str, str]) -> dict[str, FeatureSetInfo]:
    """Every set's :class:`~emorec.manifest.FeatureSetInfo`: released first, then extracted ones in order.

    An extracted set's ``model`` names its model file with the file's checksum (``path#sha256``), so a
    refitted model is seen as another dataset.

    Args:
        options: the feature options (``extract`` in order).
        released: the released sets' infos (:func:`check_feature_inputs`).
        model_sha: ``{extracted set: hex SHA-256 of its model file}`` for the sets with one.

    Returns:
        ``{set name: info}``.
    """
    infos = dict(released)
    for name in options.extract:
        info = extracted_set_info(name, options)
        if info.model is not None and name in model_sha:
            info = dataclasses.replace(info, model=f"{info.model}#{model_sha[name][:16]}")
        infos[name] = info
    return infos


# -- one recording ---------------------------------------------------------------------------


def _audio_samples(plan, num_frames: int):
    """The recording's raw audio at 16 kHz, block by block, cut or zero-padded to ``num_frames`` frames."""
    from emorec.media.audio import iter_audio_blocks

    total = num_frames * FRAME_SAMPLES
    done = 0
    for block in iter_audio_blocks(plan.path, SAMPLE_RATE, _AUDIO_BLOCK):
        block = block[: total - done]
        done += len(block)
        yield block
        if done >= total:
            return
    if done < total:
        yield np.zeros(total - done, np.float32)


def _audio_sets(prepared, options: FeatureOptions) -> dict[str, np.ndarray]:
    from emorec.features.audio_lld import AudioLLDExtractor
    from emorec.features.functionals import audio_functionals

    plan = prepared.audio_plan
    extractor = AudioLLDExtractor(loudness=options.loudness, pitch_window=options.pitch_window,
                                  source=str(plan.path))
    rows = [extractor.push(block) for block in _audio_samples(plan, prepared.num_frames)]
    rows.append(extractor.flush())
    lld = np.concatenate(rows)[: prepared.num_frames]
    out = {}
    if "audio_lld" in options.extract:
        out["audio_lld"] = lld
    if "audio_functionals" in options.extract:
        out["audio_functionals"] = audio_functionals(lld, options.functionals_frames, options.functionals_mode)
    return out


def _video_sets(prepared, options: FeatureOptions, models: FeatureModels) -> dict[str, np.ndarray]:
    from emorec.features.geometric import NUM_FEATURES, geometric_features
    from emorec.features.lgbp_top import LgbpTop
    from emorec.media.video import iter_grid_frames

    source, n = prepared.source, prepared.num_frames
    track = prepared.faces
    last = len(track.found) - 1

    predictor = _landmark_predictor(options.dlib_model) if "video_geometric" in options.extract else None
    lgbp = LgbpTop(options.lgbp_config()) if "video_appearance" in options.extract else None
    size = prepared.options.face_size
    points = np.zeros((n, 68, 2), np.float32)
    found = np.zeros(n, np.int8)

    def crops():
        for i, image in enumerate(iter_grid_frames(source.video, n)):
            j = min(i, last)
            box = np.asarray(track.boxes[j], dtype=np.float64)
            ok = int(track.found[j])
            if predictor is not None:
                points[i], found[i] = _landmarks(predictor, image, box, ok)
            else:
                found[i] = ok
            yield _crop(image, box, size)

    out = {}
    if lgbp is not None:
        parts, start = [], 0
        for vectors in lgbp.iter_vectors(crops()):
            # found[] of these frames is filled: iter_vectors has read past them.
            parts.append(models.pca.transform(vectors, found[start:start + len(vectors)]))
            start += len(vectors)
        out["video_appearance"] = np.concatenate(parts) if parts else np.zeros((0, models.pca.dims), np.float32)
    else:
        for _ in crops():
            pass
    if predictor is not None:
        out["video_geometric"] = (geometric_features(points, found, models.mean_shape) if n
                                  else np.zeros((0, NUM_FEATURES), np.float32))
    return out


def recording_features(prepared, options: FeatureOptions, models: FeatureModels) -> tuple[dict, list[str]]:
    """Every feature set of one recording on its frame grid.

    Args:
        prepared: the :class:`~emorec.recording.PreparedRecording` (its frame count is the reference).
        options: the build's feature options.
        models: the fitted video models.

    Returns:
        ``({set: (N, D) float32}, report lines)``, released sets first.

    Raises:
        MediaError, AlignmentError: a released file that does not fit the recording.
    """
    from emorec.features.arff import align_features, read_feature_arff

    source = prepared.source
    out: dict[str, np.ndarray] = {}
    report: list[str] = []
    reference = ("audio", str(prepared.audio_plan.path)) if prepared.audio_plan is not None else (
        ("video", str(source.video)) if source.video is not None and prepared.faces is not None else None)
    for name, path in (source.features or {}).items():
        table = read_feature_arff(path, fill=options.fill)
        if table.filled.any():
            report.append(f"{source.recording_id}: {path}: {int(table.filled.sum())} rows with NaN or inf set "
                          "to zero (--fill zero)")
        values, lines = align_features(table, prepared.num_frames, prepared.options.label_alignment,
                                       prepared.options.tolerance_s, source.recording_id, reference)
        out[name] = values
        report += lines
    if options.needs_audio:
        out.update(_audio_sets(prepared, options))
    if options.needs_video:
        out.update(_video_sets(prepared, options, models))
    for name, values in out.items():
        if not np.all(np.isfinite(values)):
            bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
            raise MediaError(
                f"{source.audio or source.video or source.recording_id}: feature set {name} has NaN or inf in "
                f"{len(bad)} frames (first frame {bad[0]}, {bad[0] * FRAME_PERIOD:.2f} s)")
    return {name: np.asarray(values, np.float32) for name, values in out.items()}, report

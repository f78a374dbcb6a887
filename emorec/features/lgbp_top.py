"""``video_appearance``: LGBP-TOP of the face crops, one vector per 40 ms frame, reduced by PCA.

Local Gabor Binary Patterns from Three Orthogonal Planes (Almaev & Valstar,
2013), the appearance features of the AVEC 2015 baseline that Chen & Jin used:

1. **Grey crops.** The face crops emorec stores (RGB, ``face_size`` square,
   96 by default) are turned grey (``cv2.COLOR_RGB2GRAY``), float32.
2. **Gabor magnitudes.** Each frame is filtered with a bank of complex
   Gabor kernels (:func:`gabor_kernel`): ``wavelengths`` (default 4 and 8
   pixels, one octave apart) × ``orientations`` (default 4: 0°, 45°, 90°,
   135°; the magnitude repeats after 180°), envelope σ = 0.56 λ (a one-octave
   bandwidth), round (γ = 1), kernel half-size ⌈3σ⌉, real part made
   zero-mean so that a change of brightness does not change the response.
   The magnitude ``|frame ⊛ kernel|`` of each is one Gabor volume
   (OpenCV ``filter2D``, borders reflected).
3. **LBP on three planes.** In every Gabor volume each voxel (but the
   one-pixel spatial border) gets three 8-bit codes, comparing it with its 8
   neighbours on the 3 × 3 square of the XY plane (same frame), the XT plane
   (same row, previous/same/next frame) and the YT plane (same column):
   bit ``k`` is set when the neighbour at ``(a, b)`` =
   (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1) for
   ``k`` = 0 … 7 is >= the centre, ``a`` being x (XY, XT) or y (YT) and ``b``
   y (XY) or t (XT, YT). No interpolation (the square neighbourhood of
   radius 1). Differences under :data:`TIE_TOLERANCE` (1e-3 grey levels)
   count as equal: OpenCV's filters do not round identical frames identically
   (they differ by ~1e-6), and a still face must give the codes of equal
   neighbours whatever frame it is in. Codes are mapped to the 59 uniform-pattern labels
   (:data:`UNIFORM_LUT`: the 58 codes with at most two circular 0/1
   transitions in code order, then one label for all others). At the start
   and end of a recording the first and last frame are repeated for the
   previous/next frame.
4. **Histograms.** The interior of the crop is cut into a ``grid`` × ``grid``
   (default 4 × 4) grid of cells; frame ``t``'s vector holds, for every Gabor
   volume, plane and cell, the 59-bin histogram of the codes of the frames
   ``t - block // 2 … t + block // 2`` (``block`` = 5 by default: 0.2 s,
   blocks overlap by ``block - 1`` frames so there is one per frame; frames
   outside the recording are left out), divided by its count (L1). Order:
   Gabor (wavelength-major), plane (XY, XT, YT), cell (row-major), bin.
   Default dimension 2 × 4 × 3 × 16 × 59 = 22,656.
5. **PCA** (:func:`fit_pca`), fitted on the training partition and stored
   with the dataset, reduces the vectors to 84 dimensions (the AVEC 2015
   release); frames without a face are set to zero after it (the paper's
   padding), :meth:`PCAModel.transform` with ``found``.

AVEC's own extractor used 18 Gabor filters, which with the same grid, planes
and bins gives the "50k LGBP-TOP features" (50,976) of the release; its
other settings are not published. :data:`AVEC_SIZED` (wavelengths 3, 6 and
12 pixels, 6 orientations) has that size; the default has 8 filters instead
of 18, which halves extraction time (``benchmarks/features_video.py``) and
the memory of the PCA fit (``D`` float32 per training frame).
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from emorec.errors import ConfigError, MediaError
from emorec.manifest import atomic_write_bytes

log = logging.getLogger(__name__)

PLANES = ("xy", "xt", "yt")
NUM_BINS = 59
DEFAULT_PCA_DIMS = 84
PCA_FORMAT_VERSION = 1
# Neighbour k of the 3 x 3 square, as (a, b) in-plane offsets (see the module docstring).
NEIGHBOURS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
SIGMA_PER_WAVELENGTH = 0.56  # a one-octave half-magnitude bandwidth
TIE_TOLERANCE = 1e-3  # grey levels; see the module docstring
# Frames whose Gabor magnitudes are computed together (memory: frames x filters x pixels x 4 B).
DEFAULT_CHUNK = 64
# Below this many rows or columns fit_pca takes an exact SVD; above, a randomized one.
EXACT_PCA_LIMIT = 1024


def _uniform_lut() -> np.ndarray:
    codes = np.arange(256)
    bits = (codes[:, None] >> np.arange(8)) & 1
    transitions = (bits != np.roll(bits, -1, axis=1)).sum(axis=1)
    lut = np.full(256, NUM_BINS - 1, np.uint8)
    uniform = np.flatnonzero(transitions <= 2)
    lut[uniform] = np.arange(len(uniform))
    return lut


UNIFORM_LUT = _uniform_lut()  # 256 codes -> 59 labels


@dataclasses.dataclass(frozen=True)
class LgbpTopConfig:
    """Settings of the LGBP-TOP extractor (see the module docstring); stored with the dataset."""

    wavelengths: tuple[float, ...] = (4.0, 8.0)
    orientations: int = 4
    grid: int = 4
    block: int = 5

    def __post_init__(self):
        object.__setattr__(self, "wavelengths", tuple(float(w) for w in self.wavelengths))
        checks = (
            (len(self.wavelengths) >= 1 and all(w >= 2.0 for w in self.wavelengths),
             "wavelengths must be one or more values >= 2 pixels"),
            (self.orientations >= 1, "orientations must be >= 1"),
            (self.grid >= 1, "grid must be >= 1"),
            (self.block >= 1 and self.block % 2 == 1, "block must be an odd number of frames"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"LGBP-TOP settings: {message}")

    @property
    def num_filters(self) -> int:
        """Gabor kernels in the bank."""
        return len(self.wavelengths) * self.orientations

    @property
    def dim(self) -> int:
        """Length of one frame's vector: filters x 3 planes x grid² cells x 59 bins."""
        return self.num_filters * len(PLANES) * self.grid**2 * NUM_BINS

    def to_dict(self) -> dict:
        """The settings as a JSON-serialisable dict."""
        return {**dataclasses.asdict(self), "wavelengths": list(self.wavelengths)}


AVEC_SIZED = LgbpTopConfig(wavelengths=(3.0, 6.0, 12.0), orientations=6)  # 50,976 dims


def gabor_kernel(wavelength: float, theta: float, sigma: float | None = None, gamma: float = 1.0) -> np.ndarray:
    """A complex Gabor kernel ``(2h + 1, 2h + 1)`` with a zero-mean real part.

    ``g(x, y) = exp(-(x'^2 + gamma^2 y'^2) / (2 sigma^2)) exp(2 pi i x' / wavelength)``
    with ``x' = x cos(theta) + y sin(theta)``, ``y' = -x sin(theta) + y cos(theta)``,
    ``x`` the column and ``y`` the row offset from the centre (rows grow
    downwards), ``h = ceil(3 sigma)``. The real part has the envelope's
    multiple subtracted that makes it sum to zero; the kernel is divided by
    the envelope's sum.

    Args:
        wavelength: of the carrier, in pixels.
        theta: orientation of the carrier in radians.
        sigma: envelope width (default ``0.56 * wavelength``).
        gamma: envelope aspect ratio.

    Returns:
        complex128 kernel.

    >>> k = gabor_kernel(4.0, 0.0)
    >>> k.shape, bool(abs(k.real.sum()) < 1e-12), bool(np.allclose(k[::-1, ::-1], k.conj()))
    ((15, 15), True, True)
    """
    sigma = SIGMA_PER_WAVELENGTH * wavelength if sigma is None else float(sigma)
    half = int(np.ceil(3 * sigma))
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    xr = x * np.cos(theta) + y * np.sin(theta)
    yr = -x * np.sin(theta) + y * np.cos(theta)
    envelope = np.exp(-(xr**2 + (gamma * yr) ** 2) / (2 * sigma**2))
    carrier = np.exp(2j * np.pi * xr / wavelength)
    kernel = envelope * carrier
    kernel = kernel - envelope * (kernel.real.sum() / envelope.sum())
    return kernel / envelope.sum()


def gabor_bank(config: LgbpTopConfig) -> list[np.ndarray]:
    """The config's kernels, wavelength-major, orientations ``k * 180° / orientations``.

    Args:
        config: the LGBP-TOP settings (``wavelengths``, ``orientations``).

    Returns:
        ``len(wavelengths) * orientations`` complex kernels (:func:`gabor_kernel`).

    >>> [k.shape for k in gabor_bank(LgbpTopConfig(wavelengths=(4.0,), orientations=2))]
    [(15, 15), (15, 15)]
    """
    return [
        gabor_kernel(w, np.pi * k / config.orientations)
        for w in config.wavelengths
        for k in range(config.orientations)
    ]


def gabor_magnitudes(frames: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """``|frame ⊛ kernel|`` ``(K, T, H, W)`` float32 of grey frames ``(T, H, W)`` (borders reflected).

    Args:
        frames: ``(T, H, W)`` grey frames.
        kernels: ``K`` complex kernels (:func:`gabor_bank`).

    Returns:
        The ``(K, T, H, W)`` float32 response magnitudes.

    >>> gabor_magnitudes(np.zeros((2, 8, 8)), gabor_bank(LgbpTopConfig())).shape
    (8, 2, 8, 8)
    """
    frames = np.asarray(frames, dtype=np.float32)
    out = np.empty((len(kernels),) + frames.shape, np.float32)
    for k, kernel in enumerate(kernels):
        real = np.ascontiguousarray(kernel.real, dtype=np.float32)
        imag = np.ascontiguousarray(kernel.imag, dtype=np.float32)
        for t, frame in enumerate(frames):
            re = cv2.filter2D(frame, cv2.CV_32F, real, borderType=cv2.BORDER_REFLECT)
            im = cv2.filter2D(frame, cv2.CV_32F, imag, borderType=cv2.BORDER_REFLECT)
            out[k, t] = cv2.magnitude(re, im)
    return out


def lbp_top_codes(volume: np.ndarray, tolerance: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-bit LBP codes on the XY, XT and YT planes of the interior voxels of ``(T, H, W)``.

    Args:
        volume: values, at least 3 in every axis.
        tolerance: a neighbour counts as >= the centre when it is >= centre - tolerance.

    Returns:
        Three ``(T - 2, H - 2, W - 2)`` uint8 arrays: XY, XT, YT codes of voxel
        ``[1:-1, 1:-1, 1:-1]`` (bit order in the module docstring).

    >>> v = np.zeros((3, 3, 3)); v[1] = [[5, 9, 1], [4, 6, 7], [2, 3, 8]]
    >>> int(lbp_top_codes(v)[0][0, 0, 0])  # 7, 8 and 9 are >= 6: bits 0, 1, 6
    67
    """
    v = np.asarray(volume)
    if v.ndim != 3 or min(v.shape) < 3:
        raise ValueError(f"volume must be (T, H, W) with every side >= 3, got {v.shape}")
    t, h, w = v.shape
    centre = v[1:-1, 1:-1, 1:-1] - tolerance

    def shifted(dt: int, dy: int, dx: int) -> np.ndarray:
        return v[1 + dt : t - 1 + dt, 1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx]

    planes = {
        "xy": lambda a, b: shifted(0, b, a),
        "xt": lambda a, b: shifted(b, 0, a),
        "yt": lambda a, b: shifted(b, a, 0),
    }
    codes = []
    for plane in PLANES:
        code = np.zeros(centre.shape, np.uint8)
        for bit, (a, b) in enumerate(NEIGHBOURS):
            code |= (planes[plane](a, b) >= centre).astype(np.uint8) << np.uint8(bit)
        codes.append(code)
    return codes[0], codes[1], codes[2]


def _cell_ids(height: int, width: int, grid: int) -> np.ndarray:
    """Cell number (row-major) of every pixel of a ``height x width`` interior."""
    rows = np.searchsorted(np.linspace(0, height, grid + 1)[1:-1], np.arange(height), side="right")
    cols = np.searchsorted(np.linspace(0, width, grid + 1)[1:-1], np.arange(width), side="right")
    return (rows[:, None] * grid + cols[None, :]).astype(np.int64)


def _frame_histograms(magnitudes: np.ndarray, grid: int) -> np.ndarray:
    """Per-frame label counts ``(T - 2, K, 3, grid², 59)`` of ``(K, T, H, W)`` magnitudes (interior frames)."""
    k, t, h, w = magnitudes.shape
    cells = grid * grid
    cell = _cell_ids(h - 2, w - 2, grid)
    frames = t - 2
    width = cells * NUM_BINS
    base = (np.arange(frames)[:, None, None] * width + cell[None] * NUM_BINS).ravel()
    out = np.empty((frames, k, len(PLANES), cells, NUM_BINS), np.float32)
    for f in range(k):
        for p, codes in enumerate(lbp_top_codes(magnitudes[f], TIE_TOLERANCE)):
            labels = UNIFORM_LUT[codes].ravel()
            counts = np.bincount(base + labels, minlength=frames * width)
            out[:, f, p] = counts.reshape(frames, cells, NUM_BINS)
    return out


def to_grey(frame: np.ndarray) -> np.ndarray:
    """A face crop ``(H, W, 3)`` RGB or ``(H, W)`` grey, as float32 grey ``(H, W)``.

    Args:
        frame: ``(H, W, 3)`` RGB (cast to uint8) or ``(H, W)`` grey.

    Returns:
        float32 ``(H, W)``; grey input keeps its values.

    Raises:
        ValueError: any other shape.

    >>> to_grey(np.full((2, 2, 3), 255, np.uint8)).tolist()
    [[255.0, 255.0], [255.0, 255.0]]
    """
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 3:
        frame = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    elif frame.ndim != 2:
        raise ValueError(f"a face crop must be (H, W, 3) RGB or (H, W) grey, got {frame.shape}")
    return frame.astype(np.float32)


class LgbpTop:
    """The LGBP-TOP extractor: face crops in, one ``config.dim`` vector per frame out.

    Args:
        config: the settings (defaults: see the module docstring).
        chunk: frames whose Gabor magnitudes are computed at a time (memory only;
            the result does not depend on it).
    """

    def __init__(self, config: LgbpTopConfig | None = None, chunk: int = DEFAULT_CHUNK):
        self.config = config or LgbpTopConfig()
        if chunk < 1:
            raise ConfigError(f"LGBP-TOP chunk must be >= 1 frame, got {chunk}")
        self.chunk = chunk
        self.kernels = gabor_bank(self.config)

    @property
    def dim(self) -> int:
        """Length of one frame's vector."""
        return self.config.dim

    def _vectors(self, buffer: list[np.ndarray], buffer_start: int, a: int, b: int, total: int | None) -> np.ndarray:
        """Vectors of frames ``[a, b)`` from grey frames ``buffer`` (global index ``buffer_start`` on).

        ``total`` is the recording's frame count once known (None: more frames
        follow, and the buffer reaches far enough past ``b``).
        """
        half = self.config.block // 2
        last = buffer_start + len(buffer) - 1
        # Magnitudes of frames a - half - 1 .. b + half; outside the recording its edge frame.
        wanted = np.clip(np.arange(a - half - 1, b + half + 1), 0, last)
        volume = np.stack([buffer[i - buffer_start] for i in wanted])
        if volume.shape[1] < 3 or volume.shape[2] < 3:
            raise ValueError(f"face crops must be at least 3 x 3 pixels, got {volume.shape[1:]}")
        counts = _frame_histograms(gabor_magnitudes(volume, self.kernels), self.config.grid)
        # counts[j] belongs to frame a - half + j; frames outside the recording are left out.
        frames = np.arange(a - half, b + half)
        inside = (frames >= 0) & ((frames < total) if total is not None else True)
        counts[~inside] = 0
        cumulative = np.concatenate([np.zeros_like(counts[:1]), np.cumsum(counts, axis=0)])
        width = self.config.block
        blocks = cumulative[width:] - cumulative[:-width]  # block sums for frames a .. b - 1
        totals = blocks.sum(axis=-1, keepdims=True)
        blocks /= np.maximum(totals, 1.0)
        return blocks.reshape(b - a, -1)

    def iter_vectors(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Vectors ``(n, dim)`` float32 for consecutive runs of ``frames``, streaming.

        Holds about ``chunk + block + 2`` grey frames and one chunk's Gabor
        magnitudes at a time, so a recording of any length fits in memory.
        """
        context = self.config.block // 2 + 1
        buffer: list[np.ndarray] = []
        buffer_start = 0
        done = 0
        shape = None
        for frame in frames:
            grey = to_grey(frame)
            if shape is None:
                shape = grey.shape
            elif grey.shape != shape:
                raise ValueError(f"face crops change size from {shape} to {grey.shape} at frame {buffer_start + len(buffer)}")
            buffer.append(grey)
            while buffer_start + len(buffer) >= done + self.chunk + context:
                yield self._vectors(buffer, buffer_start, done, done + self.chunk, None)
                done += self.chunk
                drop = max(0, done - context - buffer_start)
                del buffer[:drop]
                buffer_start += drop
        total = buffer_start + len(buffer)
        while done < total:
            end = min(done + self.chunk, total)
            yield self._vectors(buffer, buffer_start, done, end, total)
            done = end

    def transform(self, frames: Iterable[np.ndarray]) -> np.ndarray:
        """All the vectors ``(T, dim)`` float32 of a (short) sequence of face crops."""
        parts = list(self.iter_vectors(frames))
        if not parts:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(parts)


# -- PCA ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class PCAModel:
    """A fitted PCA: ``mean (D,)``, ``components (k, D)`` orthonormal rows, ``variance (k,)``.

    Component signs are fixed (the largest loading of each is positive) so
    that refitting the same data gives the same model.
    """

    mean: np.ndarray
    components: np.ndarray
    variance: np.ndarray

    def __post_init__(self):
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.components = np.asarray(self.components, dtype=np.float32)
        self.variance = np.asarray(self.variance, dtype=np.float64)
        k, d = self.components.shape
        if self.mean.shape != (d,) or self.variance.shape != (k,):
            raise ValueError(
                f"PCA shapes disagree: mean {self.mean.shape}, components {self.components.shape}, "
                f"variance {self.variance.shape}"
            )

    @property
    def dims(self) -> int:
        """Output dimension."""
        return self.components.shape[0]

    @property
    def input_dim(self) -> int:
        """Input dimension."""
        return self.components.shape[1]

    def transform(self, features, found=None) -> np.ndarray:
        """Project ``(N, D)`` features to ``(N, dims)`` float32; rows with ``found`` 0 become zeros."""
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"features must be (N, {self.input_dim}), got {x.shape}")
        out = (x - self.mean) @ self.components.T
        if found is not None:
            out[~np.asarray(found).astype(bool)] = 0.0
        return out.astype(np.float32, copy=False)

    def inverse_transform(self, projected) -> np.ndarray:
        """Back from ``(N, dims)`` to the input space ``(N, D)`` (the best rank-``dims`` approximation)."""
        return np.asarray(projected, dtype=np.float32) @ self.components + self.mean

    def save(self, path) -> None:
        """Write the model to an ``.npz`` file atomically."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format_version=np.int64(PCA_FORMAT_VERSION),
            mean=self.mean,
            components=self.components,
            variance=self.variance,
        )
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path) -> PCAModel:
        """Read a model written by :meth:`save`.

        Raises:
            MediaError: a missing, unreadable or inconsistent file (naming it).
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except FileNotFoundError:
            raise MediaError(f"{path}: PCA model file does not exist") from None
        except Exception as exc:  # zip and value errors all mean "corrupt"
            raise MediaError(f"{path}: unreadable PCA model file ({exc})") from exc
        version = int(arrays.get("format_version", -1))
        if version != PCA_FORMAT_VERSION:
            raise MediaError(f"{path}: PCA model format version {version}, expected {PCA_FORMAT_VERSION}")
        try:
            return cls(arrays["mean"], arrays["components"], arrays["variance"])
        except (KeyError, ValueError) as exc:
            raise MediaError(f"{path}: corrupt PCA model ({exc})") from exc


def _orthonormal(matrix: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(matrix)
    return q


def _fix_signs(components: np.ndarray) -> np.ndarray:
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(len(components)), largest])
    return components * np.where(signs == 0, 1.0, signs)[:, None]


def fit_pca(
    features,
    dims: int = DEFAULT_PCA_DIMS,
    max_samples: int | None = None,
    power_iterations: int = 4,
    seed: int = 0,
) -> PCAModel:
    """Fit a PCA on training features.

    With at most :data:`EXACT_PCA_LIMIT` rows or columns the SVD of the
    centred data is exact. Otherwise a randomized SVD (Halko, Martinsson &
    Tropp 2011: a Gaussian sketch of ``dims + 16`` columns, ``power_iterations``
    re-orthonormalised power iterations) finds the leading subspace while the
    data stay float32 and are never centred in a copy; its components agree
    with the exact ones to about float32 precision when the spectrum decays
    as LGBP-TOP's does.

    Args:
        features: ``(N, D)`` training vectors.
        dims: output dimension (84: the AVEC 2015 release).
        max_samples: use at most this many rows, evenly spaced (consecutive
            frames are nearly equal; this bounds time and memory).
        power_iterations: for the randomized SVD.
        seed: of the randomized SVD's sketch.

    Returns:
        PCAModel.

    Raises:
        ConfigError: fewer rows or columns than ``dims``, or non-finite values.
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ConfigError(f"PCA needs (frames, features), got shape {x.shape}")
    if max_samples is not None and len(x) > max_samples:
        x = x[np.linspace(0, len(x) - 1, max_samples).round().astype(np.int64)]
    n, d = x.shape
    if dims < 1 or dims > min(n, d):
        raise ConfigError(f"PCA to {dims} dimensions needs at least {dims} frames and features, got {n} x {d}")
    if not np.all(np.isfinite(x)):
        raise ConfigError("PCA features contain NaN or inf")
    mean = x.mean(axis=0, dtype=np.float64)
    if min(n, d) <= EXACT_PCA_LIMIT:
        _, s, vt = np.linalg.svd(x.astype(np.float64) - mean, full_matrices=False)
        components, singular = vt[:dims], s[:dims]
    else:
        rng = np.random.default_rng(seed)
        width = min(dims + 16, n, d)
        mean32 = mean.astype(np.float32)

        def times(matrix):  # centred data @ matrix, without centring a copy
            return x @ matrix - mean32 @ matrix

        def times_transposed(matrix):  # centred data.T @ matrix
            return x.T @ matrix - np.outer(mean32, matrix.sum(axis=0))

        q = _orthonormal(times(rng.standard_normal((d, width)).astype(np.float32)))
        for _ in range(power_iterations):
            q = _orthonormal(times(_orthonormal(times_transposed(q))))
        small = times_transposed(q).T.astype(np.float64)  # (width, d) = Q^T centred data
        _, s, vt = np.linalg.svd(small, full_matrices=False)
        components, singular = vt[:dims], s[:dims]
    variance = singular**2 / max(n - 1, 1)
    kept = variance.sum() / max(_total_variance(x, mean), 1e-30)
    log.info("PCA %d -> %d dims on %d frames keeps %.1f%% of the variance", d, dims, n, 100 * kept)
    return PCAModel(mean, _fix_signs(components), variance)


def _total_variance(x: np.ndarray, mean: np.ndarray, rows: int = 4096) -> float:
    """Sum of the per-feature variances, a block of rows at a time (no centred copy of ``x``)."""
    squares = 0.0
    for start in range(0, len(x), rows):
        block = x[start : start + rows].astype(np.float64) - mean
        squares += float(np.einsum("ij,ij->", block, block))
    return squares / max(len(x) - 1, 1)

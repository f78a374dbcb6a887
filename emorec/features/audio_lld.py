"""The 38 IS10 / emobase2010 paralinguistic low-level descriptors (+ deltas) per 40 ms frame.

Chen & Jin (``feature_lstm``) fed their LSTMs openSMILE's Interspeech 2010
Paralinguistic Challenge LLDs, extracted with a 40 ms window and a 40 ms
shift: 38 descriptors smoothed by a 3-frame moving average (``_sma``) and
their delta regression coefficients (``_sma_de``), 76 values per frame. This
module is emorec's own implementation of those descriptors with numpy and
scipy (no openSMILE code, no GPL or non-commercial dependency); the optional
:mod:`emorec.features.opensmile_lld` computes the same 76 columns with the
``opensmile`` package for comparison.

Frame grid and tail rule
------------------------
Frame ``i`` covers samples ``[640 i, 640 (i + 1))`` at 16 kHz, exactly
emorec's frame grid (:mod:`emorec.schema`); there are ``ceil(N / 640)``
frames and the last one is zero-padded, as :func:`emorec.media.audio.frame_audio`
does. Every descriptor is computed from its own frame's 640 samples (window =
shift = 40 ms, as in the paper), except: the pitch window with
``pitch_window="is10"`` (60 ms from the frame start, reaching 20 ms into the
next frame), and jitter and shimmer, whose pitch periods start inside the
frame but may end up to 2.25 periods of 52 Hz (696 samples) after it.
Samples after the end of the recording are zeros.

Two options (the default follows what openSMILE computed for the paper)
-------------------------------------------------------------------------
* ``loudness``: ``"opensmile"`` (default) reproduces openSMILE's
  ``pcm_loudness``: its cIntensity sums ``min(frame, window, outputs)``
  terms, and with loudness as its only output that is one term, so the
  value is ``(0.08 x[0]^2 / sum(hamming) / 1e-6) ** 0.3`` from the first
  sample of each frame (audeering/opensmile issue #51; present since
  openSMILE 1.0, so in every IS10 / emobase2010 feature file, Chen & Jin's
  included). ``"frame"`` is the documented definition, the Hamming-weighted
  mean square of the whole frame; it measures loudness, the default does
  not really.
* ``pitch_window``: ``"frame"`` (default) analyses pitch in the 40 ms frame,
  as the paper states for all its features; ``"is10"`` uses IS10's and
  emobase2010's 60 ms pitch frames (starting at the frame start). Subharmonic
  summation needs resolved harmonics: in 40 ms windows voices below about
  180 Hz are mostly unvoiced (F0 = 0; openSMILE alike), in 60 ms windows
  F0 is found down to about 100 Hz.

Descriptors (openSMILE component and IS10 setting they follow)
--------------------------------------------------------------
* ``pcm_loudness``: ``(I / 1e-6) ** 0.3``, ``I`` as chosen by ``loudness``
  (cIntensity; samples in [-1, 1]).
* Spectrum for the MFCC, mel bands and LSPs: per-frame pre-emphasis
  ``y[n] = x[n] - 0.97 x[n-1]`` (``y[0] = 0.03 x[0]``), symmetric Hamming
  window, FFT zero-padded to 1024 points.
* ``mfcc[0..14]``: power spectrum, 26 triangular mel filters (mel =
  1127 ln(1 + f / 700)) equally spaced between 20 and 8000 Hz with triangles
  in the mel domain over FFT bins ``round(20 / df) < n < round(8000 / df)``,
  natural log floored at 1e-8, DCT-II scaled by ``sqrt(2 / 26)``, cepstral
  liftering ``1 + 11 sin(pi i / 22)`` (cMelspec, cMfcc; not HTK-compatible).
* ``logMelFreqBand[0..7]``: the same filter bank with 8 bands between 20 and
  6500 Hz, natural log floored at 1e-12.
* ``lspFreq[0..7]``: line spectral pair frequencies in radians (0..pi) of an
  order-8 LPC (autocorrelation method, Levinson-Durbin) of the frame
  resynthesised at 11 kHz from its FFT bins 0..219 (440 samples), which is
  what cSpecResample does with IS10's ``targetFs = 11000``: its anti-aliasing
  keeps 220 bins, i.e. the LPC sees the band below 3.4 kHz. The LSPs are the
  sorted angles of the roots of the sum and difference polynomials, found as
  eigenvalues of their degree-4 Chebyshev forms (openSMILE searches the same
  roots by bisection).
* Pitch (cPitchShs, subharmonic summation): the raw pitch window with a
  Gaussian window (sigma = 0.25 of the half length), 1024-point magnitude
  spectrum, resampled by a natural cubic spline onto 513 points equally
  spaced in log2(f) from 25 Hz to 8 kHz; 15 harmonics compressed by 0.85 per
  harmonic are summed (shift ``floor(points_per_octave * log2(h))``), divided
  by 15 and floored at 0. Candidates are the successive record peaks of that
  spectrum (each higher than every peak before it, scanning upwards; the last
  three kept), refined by a parabola; those outside 52..620 Hz are dropped and
  the best-scoring one is the frame's F0 candidate, with voicing
  ``1 - mean(SHS) / peak``. F0 is 0 where that voicing is <= 0.75.
* ``F0final`` (cPitchSmoother, ``postSmoothingMethod = simple``): one frame of
  look-ahead removes a voiced frame between two unvoiced ones and a
  one-frame octave jump (ratio > 1.2 or < 0.8 to the previous frame, then
  back). ``F0finEnv``: running envelope of F0final, ``0.75 env + 0.25 F0`` on
  voiced frames, held through unvoiced ones. ``voicingFinalUnclipped``: the
  chosen candidate's voicing (not clipped at the threshold).
* ``jitterLocal``, ``jitterDDP``, ``shimmerLocal`` (cPitchJitter) on voiced
  frames (F0final > 0): pitch periods are measured at
  ``ceil(640 / T0)`` starts spaced ``T0 = 16000 / F0final`` samples apart
  from the frame start, each as the lag in ``[0.75 T0, 1.25 T0]`` with the
  highest local maximum of the normalised cross-correlation between the
  ``round(T0)`` samples at the start and those one lag later (parabolic
  sub-sample refinement), kept when that correlation exceeds 0.5. Its
  amplitude is the peak-to-peak value of the period. Consecutive kept
  periods of one voiced run (pairs may span frames; an unvoiced frame ends
  the run) give ``jitterLocal = mean |T_k - T_k-1| / mean T``, ``jitterDDP =
  mean ||T_k - T_k-1| - |T_k-1 - T_k-2|| / mean T`` and ``shimmerLocal =
  mean |A_k - A_k-1| / mean A``, each over the pairs ending in the frame and
  the periods of the frame, clipped to [0, 1]; 0 on unvoiced frames and where
  no pair ends in the frame.
* ``_sma``: centred 3-frame moving average; ``_sma_de``: delta regression
  ``sum_k k (y[t+k] - y[t-k]) / (2 sum_k k^2)`` with k = 1, 2 on the
  smoothed tracks (cContourSmoother, cDeltaRegression). Both repeat the first
  and last frame beyond the edges, as openSMILE does.

Known differences from openSMILE's IS10 config run with 40 ms frames
---------------------------------------------------------------------
Measured on espeak-ng speech (tests/test_opensmile_lld.py): Pearson
correlation >= 0.99 for loudness, MFCCs, mel bands, LSPs, F0final and
F0finEnv and their deltas; F0, its envelope and voicing identical (to float
rounding) except in the recording's last two frames. The differences:

* The recording's last frame: openSMILE's pitch smoother has no look-ahead
  frame for it, and its F0, voicing, jitter and shimmer columns repeat the
  last-but-one frame's unsmoothed values; here the last frame is smoothed as
  if an unvoiced frame followed. (Like openSMILE, frame 0 has F0 and voicing
  0: its smoother skips the first frame.)
* Jitter and shimmer: openSMILE tracks periods sequentially from where the
  previous frame's last period ended, and its IS10 "compat" setting
  (``useBrokenJitterThresh``) rejects each frame's first period and any
  period whose correlation is a new minimum for its frame; it also pairs
  amplitudes only within a frame. Here period starts sit on a grid of the
  frame's nominal period (which lets all periods be measured at once with
  FFTs), every period above the correlation threshold counts and amplitude
  pairs follow the period pairs. On voiced speech-like signals the two
  correlate at about 0.9 (jitter) and 0.95 (shimmer); on nearly perfectly
  periodic synthetic speech both are tiny and correlate weakly.
* openSMILE reads 16-bit samples; spline, FFT and filter arithmetic here is
  float32, so values differ in the last digits, and voicing can differ in
  near-silent frames where subharmonic peaks are nearly equal. LSP roots are
  exact rather than bisected.

Speed: every stage except the per-frame pitch smoother (a loop over 25
frames per second) is vectorised over frames, processed in blocks of
:data:`DEFAULT_BLOCK_FRAMES` frames so that memory does not grow with the
recording; see ``benchmarks/features.py``.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
import scipy.fft
from scipy.interpolate import CubicSpline

from emorec.errors import ConfigError, MediaError
from emorec.schema import FRAME_SAMPLES, SAMPLE_RATE

logger = logging.getLogger(__name__)

# -- settings of IS10 (openSMILE's IS10_paraling_compat.conf), 40 ms frames ---------------------
_FFT_SIZE = 1 << (FRAME_SAMPLES - 1).bit_length()  # openSMILE zero-pads frames to a power of 2
_NUM_BINS = _FFT_SIZE // 2 + 1
_BIN_HZ = SAMPLE_RATE / _FFT_SIZE
_LOUDNESS_REFERENCE = 1e-6
_LOUDNESS_EXPONENT = 0.3
_PREEMPHASIS = 0.97
_MFCC_BANDS, _MFCC_LOW_HZ, _MFCC_HIGH_HZ = 26, 20.0, 8000.0
_NUM_MFCC, _CEP_LIFTER, _MFCC_LOG_FLOOR = 15, 22.0, 1e-8
_LOGMEL_BANDS, _LOGMEL_LOW_HZ, _LOGMEL_HIGH_HZ, _LOGMEL_FLOOR = 8, 20.0, 6500.0, 1e-12
_LPC_ORDER, _LPC_RATE = 8, 11_000
_PITCH_SIGMA = 0.25
_SHS_MIN_HZ, _SHS_HARMONICS, _SHS_COMPRESSION, _SHS_CANDIDATES = 25.0, 15, 0.85, 3
_MIN_PITCH_HZ, _MAX_PITCH_HZ, _VOICING_CUTOFF = 52.0, 620.0, 0.75
_ENVELOPE_MEMORY = 0.75
_OCTAVE_UP, _OCTAVE_DOWN = 0.8, 1.2
_JITTER_SEARCH, _JITTER_MIN_CC = 0.25, 0.5
_SMA_HALF, _DELTA_HALF = 1, 2

#: Pitch analysis window: ``frame`` = the 40 ms frame itself (the paper: "40ms frame window and
#: 40ms shift"); ``is10`` = 60 ms starting at the frame start, as in IS10 / emobase2010.
PITCH_WINDOWS = {"frame": FRAME_SAMPLES, "is10": round(0.06 * SAMPLE_RATE)}
DEFAULT_PITCH_WINDOW = "frame"

#: ``opensmile``: what openSMILE's IS10 config computes (its cIntensity uses only the first
#: sample of each frame, audeering/opensmile issue #51); ``frame``: the documented definition,
#: the Hamming-weighted mean square of the whole frame.
LOUDNESS_MODES = ("opensmile", "frame")
DEFAULT_LOUDNESS = "opensmile"

# Period measurements reach this many samples past their frame's end.
_JITTER_LOOKAHEAD = math.ceil((2.0 + _JITTER_SEARCH) * SAMPLE_RATE / _MIN_PITCH_HZ) + 2
# FFT lengths used to correlate pitch periods (a period is put in the smallest that fits).
_CORR_FFT_SIZES = (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# Frames processed at once: bounds the temporary arrays (a few MB) whatever the recording length.
DEFAULT_BLOCK_FRAMES = 250

_BASE_LLDS = (
    ("pcm_loudness", None),
    *(("mfcc", i) for i in range(_NUM_MFCC)),
    *(("logMelFreqBand", i) for i in range(_LOGMEL_BANDS)),
    *(("lspFreq", i) for i in range(_LPC_ORDER)),
    ("F0finEnv", None),
    ("voicingFinalUnclipped", None),
    ("F0final", None),
    ("jitterLocal", None),
    ("jitterDDP", None),
    ("shimmerLocal", None),
)


def _lld_name(base: str, index: int | None, suffix: str) -> str:
    return f"{base}{suffix}" if index is None else f"{base}{suffix}[{index}]"


NUM_BASE_LLDS = len(_BASE_LLDS)
#: The 76 column names, as openSMILE's IS10 config names them: 38 smoothed LLDs, then their deltas.
LLD_NAMES: tuple[str, ...] = tuple(
    _lld_name(base, index, suffix) for suffix in ("_sma", "_sma_de") for base, index in _BASE_LLDS
)
NUM_LLDS = len(LLD_NAMES)

# Column blocks of the 38 base descriptors.
_COL_LOUDNESS = 0
_COL_MFCC = slice(1, 1 + _NUM_MFCC)
_COL_LOGMEL = slice(_COL_MFCC.stop, _COL_MFCC.stop + _LOGMEL_BANDS)
_COL_LSP = slice(_COL_LOGMEL.stop, _COL_LOGMEL.stop + _LPC_ORDER)
_NUM_SPECTRAL = _COL_LSP.stop  # loudness, MFCC, mel bands, LSPs: computed from one frame alone


# -- fixed tables --------------------------------------------------------------------------------


def _mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_filter_bank(num_bands: int, low_hz: float, high_hz: float) -> np.ndarray:
    """``(bins, bands)`` triangular filters, equally spaced and triangular on the mel scale."""
    edges = np.linspace(_mel(low_hz), _mel(high_hz), num_bands + 2)
    bank = np.zeros((_NUM_BINS, num_bands))
    first, stop = round(low_hz / _BIN_HZ) + 1, round(high_hz / _BIN_HZ)
    bins = np.arange(first, stop)
    mel = _mel(bins * _BIN_HZ)
    upper = np.searchsorted(edges, mel, side="left")  # edges[upper - 1] < mel <= edges[upper]
    falling = (edges[upper] - mel) / (edges[upper] - edges[upper - 1])
    # A bin lies on the falling slope of the band centred on edges[upper - 1] and on the rising
    # slope of the band centred on edges[upper].
    for band, weight in ((upper - 2, falling), (upper - 1, 1.0 - falling)):
        keep = (band >= 0) & (band < num_bands)
        bank[bins[keep], band[keep]] += weight[keep]
    return bank


@functools.lru_cache(maxsize=1)
def _tables() -> dict:
    """Windows, filter banks and matrices of the frame-spectrum descriptors."""
    n = np.arange(FRAME_SAMPLES)
    hamming = 0.54 - 0.46 * np.cos(2.0 * np.pi * n / (FRAME_SAMPLES - 1))

    bands = np.arange(_MFCC_BANDS)
    order = np.arange(_NUM_MFCC)
    lifter = 1.0 + _CEP_LIFTER / 2.0 * np.sin(np.pi * order / _CEP_LIFTER)
    dct = np.cos(np.pi * np.outer(bands + 0.5, order) / _MFCC_BANDS)
    dct *= math.sqrt(2.0 / _MFCC_BANDS) * lifter

    # LPC input: bins kept by cSpecResample's anti-aliasing and the resynthesis length.
    lpc_samples = round(FRAME_SAMPLES * _LPC_RATE / SAMPLE_RATE)
    lpc_bins = min(_FFT_SIZE, lpc_samples) // 2
    lpc_period = _FFT_SIZE * lpc_samples / FRAME_SAMPLES
    if not float(lpc_period).is_integer():
        raise AssertionError(f"resynthesis period {lpc_period} is not a whole number of samples")

    # Power coefficients of sum_k d_k T_k(x) (Chebyshev T), for the LSP polynomials.
    half_order = _LPC_ORDER // 2
    cheb_to_power = np.zeros((half_order + 1, half_order + 1))
    for k in range(half_order + 1):
        power = np.polynomial.chebyshev.cheb2poly(np.eye(half_order + 1)[k])
        cheb_to_power[k, : power.size] = power
    return {
        "hamming": hamming.astype(np.float32),
        "hamming_sum": float(hamming.sum()),
        "mfcc_bank": _mel_filter_bank(_MFCC_BANDS, _MFCC_LOW_HZ, _MFCC_HIGH_HZ).astype(np.float32),
        "logmel_bank": _mel_filter_bank(_LOGMEL_BANDS, _LOGMEL_LOW_HZ, _LOGMEL_HIGH_HZ).astype(
            np.float32
        ),
        "dct": dct.astype(np.float32),
        "lpc_samples": lpc_samples,
        "lpc_bins": lpc_bins,
        "lpc_period": int(lpc_period),
        "cheb_to_power": cheb_to_power,
    }


@functools.lru_cache(maxsize=len(PITCH_WINDOWS))
def _pitch_tables(window: int) -> dict:
    """Gaussian window and the ``|spectrum| -> subharmonic sum`` matrix for ``window`` samples."""
    n = np.arange(window)
    half = (window - 1) / 2.0
    gauss = np.exp(-0.5 * ((n - half) / (_PITCH_SIGMA * half)) ** 2)
    fft_size = 1 << (window - 1).bit_length()
    num_bins = fft_size // 2 + 1
    bin_hz = SAMPLE_RATE / fft_size
    # cSpecScale: a natural cubic spline through (log2 f, |X(f)|) sampled at points equally
    # spaced in log2 f; bin 0 gets the log frequency one octave below bin 1.
    knots = np.log2(np.maximum(np.arange(num_bins), 1) * bin_hz)
    knots[0] = 2.0 * knots[1] - knots[2]
    log_low, log_high = math.log2(_SHS_MIN_HZ), math.log2(SAMPLE_RATE / 2.0)
    points = num_bins
    log_step = (log_high - log_low) / (points - 1)
    axis = log_low + log_step * np.arange(points)
    spline = CubicSpline(knots, np.eye(num_bins), bc_type="natural")(axis)  # (points, bins)
    # cPitchShs: harmonic h is read floor(per_octave * log2 h) points up; openSMILE counts
    # points / octaves (not (points - 1) / octaves) points per octave.
    per_octave = points / (log_high - log_low)
    summation = np.zeros((points, points))
    for harmonic in range(1, _SHS_HARMONICS + 1):
        shift = math.floor(per_octave * math.log2(harmonic))
        weight = _SHS_COMPRESSION ** (harmonic - 1) / _SHS_HARMONICS
        idx = np.arange(points - shift)
        summation[idx + shift, idx] += weight
    return {
        "gauss": gauss.astype(np.float32),
        "fft_size": fft_size,
        "shs": (spline.T @ summation).astype(np.float32),
        "log_low": log_low,
        "log_step": log_step,
    }


# -- per-frame descriptors -----------------------------------------------------------------------


def _levinson(acf: np.ndarray, order: int) -> np.ndarray:
    """LPC coefficients ``a_1..a_p`` of ``A(z) = 1 + sum a_k z^-k`` for each row of ``acf``."""
    n = acf.shape[0]
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = acf[:, 0].copy()
    for m in range(1, order + 1):
        acc = acf[:, m] + np.einsum("ij,ij->i", a[:, 1:m], acf[:, m - 1 : 0 : -1])
        ok = err > 0.0
        k = np.where(ok, -acc / np.where(ok, err, 1.0), 0.0)
        previous = a[:, 1:m].copy()
        a[:, 1:m] = previous + k[:, None] * previous[:, ::-1]
        a[:, m] = k
        err = err * (1.0 - k * k)
    return a[:, 1:]


def _lsp_from_lpc(a: np.ndarray, cheb_to_power: np.ndarray) -> np.ndarray:
    """Sorted line spectral frequencies (radians) of the LPC polynomials ``1 + sum a_k z^-k``."""
    n, order = a.shape
    full = np.concatenate([np.ones((n, 1)), a, np.zeros((n, 1))], axis=1)  # 1, a_1..a_p, 0
    mirrored = full[:, ::-1]
    half = order // 2
    roots = []
    for sign in (1.0, -1.0):
        poly = full + sign * mirrored  # symmetric (sum) or antisymmetric (difference), degree p + 1
        # Remove the trivial root at z = -1 (sum) or z = +1 (difference).
        reduced = np.empty((n, order + 1))
        reduced[:, 0] = poly[:, 0]
        for k in range(1, order + 1):
            reduced[:, k] = poly[:, k] - sign * reduced[:, k - 1]
        # Symmetric degree-2h polynomial on the unit circle = c_h + 2 sum_k c_(h-k) cos(k w).
        cheb = np.concatenate(
            [reduced[:, half : half + 1], 2.0 * reduced[:, half - 1 :: -1]], axis=1
        )
        power = cheb @ cheb_to_power  # (n, h + 1) ascending powers of x = cos(w)
        companion = np.zeros((n, half, half))
        companion[:, 1:, :-1] = np.eye(half - 1)
        companion[:, :, -1] = -power[:, :half] / power[:, half : half + 1]
        roots.append(np.linalg.eigvals(companion).real)
    x = np.clip(np.concatenate(roots, axis=1), -1.0, 1.0)
    return np.sort(np.arccos(x), axis=1)


def _pitch_candidates(shs_spec: np.ndarray, log_low: float, log_step: float) -> tuple:
    """F0 (Hz, 0 if none) and voicing of the best candidate of each row of the SHS spectrum."""
    n = shs_spec.shape[0]
    left, mid, right = shs_spec[:, :-2], shs_spec[:, 1:-1], shs_spec[:, 2:]
    peak = (left < mid) & (mid > right)
    peak_values = np.where(peak, mid, 0.0)
    best_before = np.maximum.accumulate(peak_values, axis=1)
    best_before = np.concatenate([np.zeros((n, 1), shs_spec.dtype), best_before[:, :-1]], axis=1)
    record = peak & (mid > best_before)
    rows, cols = np.nonzero(record)
    counts = np.bincount(rows, minlength=n)
    first = np.cumsum(counts) - counts
    rank = counts[rows] - 1 - (np.arange(rows.size) - first[rows])  # 0 = highest record
    keep = rank < _SHS_CANDIDATES
    rows, cols, rank = rows[keep], cols[keep] + 1, rank[keep]
    y0, y1, y2 = (shs_spec[rows, cols + d].astype(np.float64) for d in (-1, 0, 1))
    curvature = y0 - 2.0 * y1 + y2  # < 0 at a strict peak
    offset = 0.5 * (y0 - y2) / curvature
    score = y1 - 0.25 * (y0 - y2) * offset
    freq = np.exp2(log_low + (cols + offset) * log_step)
    mean = shs_spec.mean(axis=1, dtype=np.float64)[rows]
    voicing = np.where((score > 0.0) & (score > mean), 1.0 - mean / np.maximum(score, 1e-30), 0.0)
    valid = (freq >= _MIN_PITCH_HZ) & (freq <= _MAX_PITCH_HZ)

    table_score = np.full((n, _SHS_CANDIDATES), -np.inf)
    table_freq = np.zeros((n, _SHS_CANDIDATES))
    table_voicing = np.zeros((n, _SHS_CANDIDATES))
    table_score[rows, rank] = np.where(valid, score, -np.inf)
    table_freq[rows, rank] = freq
    table_voicing[rows, rank] = voicing
    best = np.argmax(table_score, axis=1)
    found = np.isfinite(table_score[np.arange(n), best])
    f0 = np.where(found, table_freq[np.arange(n), best], 0.0)
    voice = np.where(found, table_voicing[np.arange(n), best], 0.0)
    return f0, voice


def _spectral_descriptors(frames: np.ndarray, loudness: str) -> np.ndarray:
    """Loudness, MFCC, log mel bands and LSPs (before smoothing) of each frame: ``(n, 32)``."""
    tab = _tables()
    n = frames.shape[0]
    out = np.empty((n, _NUM_SPECTRAL), dtype=np.float32)

    if loudness == "opensmile":
        # cIntensity sums min(frame, window, outputs) = 1 term: the first sample's.
        power = tab["hamming"][0] * np.square(frames[:, 0]) / tab["hamming_sum"]
    else:
        power = np.square(frames, dtype=np.float32) @ tab["hamming"] / tab["hamming_sum"]
    out[:, _COL_LOUDNESS] = np.power(power / _LOUDNESS_REFERENCE, _LOUDNESS_EXPONENT)

    emphasised = np.empty_like(frames)
    emphasised[:, 0] = (1.0 - _PREEMPHASIS) * frames[:, 0]
    emphasised[:, 1:] = frames[:, 1:] - _PREEMPHASIS * frames[:, :-1]
    spectrum = scipy.fft.rfft(emphasised * tab["hamming"], n=_FFT_SIZE, axis=1)
    spec_power = np.square(spectrum.real) + np.square(spectrum.imag)
    mel = np.log(np.maximum(spec_power @ tab["mfcc_bank"], _MFCC_LOG_FLOOR))
    out[:, _COL_MFCC] = mel @ tab["dct"]
    out[:, _COL_LOGMEL] = np.log(np.maximum(spec_power @ tab["logmel_bank"], _LOGMEL_FLOOR))

    # LPC of the frame resynthesised at 11 kHz from its low bins (DC counted twice, as openSMILE
    # does; the scale of the signal does not matter to LPC).
    kept = np.zeros((n, tab["lpc_period"] // 2 + 1), dtype=spectrum.dtype)
    kept[:, : tab["lpc_bins"]] = spectrum[:, : tab["lpc_bins"]]
    kept[:, 0] *= 2.0
    resampled = scipy.fft.irfft(kept, n=tab["lpc_period"], axis=1)[:, : tab["lpc_samples"]]
    resampled = resampled.astype(np.float64)
    length = resampled.shape[1]
    acf = np.stack(
        [
            np.einsum("ij,ij->i", resampled[:, lag:], resampled[:, : length - lag])
            for lag in range(_LPC_ORDER + 1)
        ],
        axis=1,
    )
    out[:, _COL_LSP] = _lsp_from_lpc(_levinson(acf, _LPC_ORDER), tab["cheb_to_power"])
    return out


def _pitch_descriptors(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F0 candidate (Hz; 0 at or below the voicing threshold) and voicing of each pitch window."""
    tab = _pitch_tables(windows.shape[1])
    magnitude = np.abs(scipy.fft.rfft(windows * tab["gauss"], n=tab["fft_size"], axis=1))
    shs_spec = np.maximum(magnitude @ tab["shs"], 0.0)
    f0, voicing = _pitch_candidates(shs_spec, tab["log_low"], tab["log_step"])
    return np.where(voicing > _VOICING_CUTOFF, f0, 0.0), voicing


# -- pitch smoothing (sequential, one frame of look-ahead) ---------------------------------------


class _PitchSmoother:
    """cPitchSmoother's "simple" post-smoothing, F0 envelope and voicing, one frame behind."""

    def __init__(self):
        self._started = False
        self._held: float | None = None  # raw F0 of the frame waiting for its successor
        self._held_voicing = 0.0
        self._onset = 0  # 1: the held frame starts a voiced stretch; -1: it ends one
        self._octave = 0  # 1: the held frame jumped up an octave; -1: down
        self._envelope = 0.0

    def push(self, f0: np.ndarray, voicing: np.ndarray) -> np.ndarray:
        """Feed raw per-frame F0 and voicing; return ``(k, 3)`` ``[F0final, F0finEnv, voicing]``."""
        rows = []
        for value, voice in zip(f0.tolist(), voicing.tolist()):
            if not self._started:
                # cPitchSmoother skips the recording's first frame: F0 and voicing 0 there.
                self._started = True
                value = voice = 0.0
            if self._held is not None:
                rows.append(self._finish(value))
            self._held, self._held_voicing = value, voice
        return np.asarray(rows, dtype=np.float64).reshape(-1, 3)

    def flush(self) -> np.ndarray:
        """Finish the last frame as if an unvoiced frame followed it."""
        rows = [] if self._held is None else [self._finish(0.0)]
        self.__init__()
        return np.asarray(rows, dtype=np.float64).reshape(-1, 3)

    def _finish(self, nxt: float) -> tuple[float, float, float]:
        held = self._held
        if held == 0.0 and nxt > 0.0:
            self._onset = 1
        elif held > 0.0 and nxt == 0.0 and self._onset == 0:
            self._onset = -1
        elif (held > 0.0) == (nxt > 0.0):
            self._onset = 0
        if nxt == 0.0 and self._onset == 1:
            held = 0.0  # a single voiced frame between unvoiced ones
        up = down = False
        if held > 0.0 and nxt > 0.0:
            ratio = held / nxt
            down, up = ratio > _OCTAVE_DOWN, ratio < _OCTAVE_UP
        # A jump back right after a jump the other way: the held frame was an octave error.
        if (up and self._octave == -1) or (down and self._octave == 1):
            held = nxt
        self._octave = 1 if up else (-1 if down else 0)
        if held > 0.0:
            self._envelope = (
                held
                if self._envelope == 0.0
                else (_ENVELOPE_MEMORY * self._envelope + (1.0 - _ENVELOPE_MEMORY) * held)
            )
        return held, self._envelope, self._held_voicing


# -- jitter and shimmer --------------------------------------------------------------------------


def _measure_periods(wave: np.ndarray, starts: np.ndarray, nominal: np.ndarray) -> tuple:
    """Period length (in samples), its correlation and peak-to-peak amplitude at each start.

    ``wave`` must extend at least ``1.25 * nominal + round(nominal) + 1`` samples past each
    start plus the largest FFT length (zeros are fine).
    """
    count = starts.size
    lo = np.floor((1.0 - _JITTER_SEARCH) * nominal).astype(np.int64)
    hi = np.ceil((1.0 + _JITTER_SEARCH) * nominal).astype(np.int64)
    width = np.rint(nominal).astype(np.int64)
    lags = hi - lo + 1
    sizes = np.asarray(_CORR_FFT_SIZES)
    size_of = sizes[np.minimum(np.searchsorted(sizes, width + lags - 1), sizes.size - 1)]
    cum = np.concatenate([[0.0], np.cumsum(wave, dtype=np.float64)])
    cum_sq = np.concatenate([[0.0], np.cumsum(np.square(wave, dtype=np.float64))])

    period = np.zeros(count)
    corr = np.full(count, -np.inf)
    amplitude = np.zeros(count)
    for size in np.unique(size_of):
        sel = np.nonzero(size_of == size)[0]
        s, a, w, nl = starts[sel], lo[sel], width[sel], lags[sel]
        offsets = np.arange(size)
        head = wave[s[:, None] + offsets]
        template = np.where(offsets < w[:, None], head, 0.0)
        region = wave[(s + a)[:, None] + offsets]
        max_lags = int(nl.max())
        cross = scipy.fft.irfft(
            np.conj(scipy.fft.rfft(template, axis=1)) * scipy.fft.rfft(region, axis=1),
            n=size,
            axis=1,
        )[:, :max_lags]
        k = np.arange(max_lags)
        t_sum = cum[s + w] - cum[s]
        t_sq = cum_sq[s + w] - cum_sq[s]
        win = (s + a)[:, None] + k
        w_sum = cum[win + w[:, None]] - cum[win]
        w_sq = cum_sq[win + w[:, None]] - cum_sq[win]
        wf = w.astype(np.float64)[:, None]
        cov = cross - t_sum[:, None] * w_sum / wf
        var = (t_sq - t_sum**2 / w)[:, None] * (w_sq - w_sum**2 / wf)
        cc = np.where(var > 1e-20, cov / np.sqrt(np.maximum(var, 1e-20)), 0.0)
        interior = (k >= 1) & (k[None, :] <= (nl - 2)[:, None])
        before = np.concatenate([np.full((sel.size, 1), np.inf), cc[:, :-1]], axis=1)
        after = np.concatenate([cc[:, 1:], np.full((sel.size, 1), np.inf)], axis=1)
        local_max = interior & (before < cc) & (cc > after)
        masked = np.where(local_max, cc, -np.inf)
        best = np.argmax(masked, axis=1)
        rows = np.arange(sel.size)
        has = local_max[rows, best]
        b = np.clip(best, 1, max_lags - 2)
        y0, y1, y2 = cc[rows, b - 1], cc[rows, b], cc[rows, b + 1]
        curvature = y0 - 2.0 * y1 + y2
        safe = np.where(curvature < 0.0, curvature, -1.0)
        offset = np.where(curvature < 0.0, 0.5 * (y0 - y2) / safe, 0.0)
        peak = y1 - 0.25 * (y0 - y2) * offset
        whole = a + best
        period[sel] = whole + offset
        corr[sel] = np.where(has, peak, -np.inf)
        in_period = offsets < whole[:, None]
        amplitude[sel] = np.where(in_period, head, -np.inf).max(axis=1) - np.where(
            in_period, head, np.inf
        ).min(axis=1)
    return period, corr, amplitude


class _JitterTracker:
    """Jitter and shimmer per voiced frame; carries the last period across blocks."""

    def __init__(self):
        self._previous_voiced = False
        self._last: tuple[float, float, float, bool] | None = None  # period, amplitude, |dT|, valid

    def process(self, wave: np.ndarray, f0: np.ndarray) -> np.ndarray:
        """``(n, 3)`` ``[jitterLocal, jitterDDP, shimmerLocal]`` for ``n`` consecutive frames.

        ``wave`` starts at the first frame's first sample and holds at least
        ``n * 640 + lookahead`` samples (callers zero-pad after the recording's end).
        """
        n = f0.size
        out = np.zeros((n, 3))
        voiced = f0 > 0.0
        run_start = voiced & ~np.concatenate([[self._previous_voiced], voiced[:-1]])
        run = np.cumsum(run_start)  # 0 = the run that was already going on before this block
        frames = np.nonzero(voiced)[0]
        if frames.size:
            nominal = SAMPLE_RATE / f0[frames]
            per_frame = np.ceil(FRAME_SAMPLES / nominal).astype(np.int64)
            cyc_frame = np.repeat(frames, per_frame)
            index = np.arange(cyc_frame.size) - np.repeat(
                np.cumsum(per_frame) - per_frame, per_frame
            )
            cyc_nominal = np.repeat(nominal, per_frame)
            starts = cyc_frame * FRAME_SAMPLES + np.rint(index * cyc_nominal).astype(np.int64)
            padded = np.concatenate(
                [wave, np.zeros(_CORR_FFT_SIZES[-1] + _JITTER_LOOKAHEAD, wave.dtype)]
            )
            period, corr, amplitude = _measure_periods(padded, starts, cyc_nominal)
            ok = corr > _JITTER_MIN_CC
            cyc_frame, period, amplitude = cyc_frame[ok], period[ok], amplitude[ok]
        else:
            cyc_frame = np.zeros(0, np.int64)
            period = amplitude = np.zeros(0)
        cyc_run = run[cyc_frame]
        carried = self._last is not None and voiced.size > 0 and voiced[0] and self._previous_voiced
        if carried:
            last_period, last_amp, last_diff, last_valid = self._last
            period = np.concatenate([[last_period], period])
            amplitude = np.concatenate([[last_amp], amplitude])
            cyc_run = np.concatenate([[0], cyc_run])
            cyc_frame = np.concatenate([[-1], cyc_frame])
        same = cyc_run[1:] == cyc_run[:-1]
        diff = np.abs(np.diff(period))
        amp_diff = np.abs(np.diff(amplitude))
        diff_valid = np.concatenate([[carried and last_valid], same])
        diff_full = np.concatenate([[last_diff if carried else 0.0], diff])
        ddp_valid = diff_valid[1:] & diff_valid[:-1]
        ddp = np.abs(np.diff(diff_full))
        owner = cyc_frame[1:]  # a pair belongs to the frame of its later period
        own = cyc_frame >= 0

        def per_frame_mean(values, where, frames_of):
            total = np.bincount(frames_of[where], values[where], minlength=n)
            num = np.bincount(frames_of[where], minlength=n)
            return total, num

        sum_period, num_period = per_frame_mean(period, own, cyc_frame)
        sum_amp, _ = per_frame_mean(amplitude, own, cyc_frame)
        sum_diff, num_diff = per_frame_mean(diff, same, owner)
        sum_ddp, num_ddp = per_frame_mean(ddp, ddp_valid, owner)
        sum_ad, num_ad = per_frame_mean(amp_diff, same, owner)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_period = sum_period / num_period
            mean_amp = sum_amp / num_period
            jitter = np.where(num_diff > 0, sum_diff / np.maximum(num_diff, 1) / mean_period, 0.0)
            jitter_ddp = np.where(num_ddp > 0, sum_ddp / np.maximum(num_ddp, 1) / mean_period, 0.0)
            shimmer = np.where(
                (num_ad > 0) & (mean_amp > 0), sum_ad / np.maximum(num_ad, 1) / mean_amp, 0.0
            )
        out[:, 0] = jitter
        out[:, 1] = jitter_ddp
        out[:, 2] = shimmer
        out = np.clip(np.nan_to_num(out), 0.0, 1.0)
        out[~voiced] = 0.0

        if n:
            last_run = run[-1]
            if voiced[-1] and period.size and cyc_run[-1] == last_run:
                self._last = (
                    float(period[-1]),
                    float(amplitude[-1]),
                    float(diff_full[-1]),
                    bool(diff_valid[-1]),
                )
            else:
                self._last = None
            self._previous_voiced = bool(voiced[-1])
        return out


# -- smoothing and deltas (centred, edges repeated) ----------------------------------------------


class _Centred:
    """A centred filter over ``2 * half + 1`` frames, streamed; edge frames are repeated."""

    def __init__(self, half: int, weights: np.ndarray, width: int):
        self._half = half
        self._width = width
        self._weights = weights  # (2 * half + 1,), applied to frames t - half .. t + half
        self._buffer: np.ndarray | None = None  # context frames and frames still to output

    def push(self, rows: np.ndarray) -> np.ndarray:
        if rows.shape[0] == 0:
            return rows
        if self._buffer is None:
            self._buffer = np.repeat(rows[:1], self._half, axis=0)
        self._buffer = np.concatenate([self._buffer, rows])
        return self._emit()

    def flush(self) -> np.ndarray:
        if self._buffer is None:
            return np.zeros((0, self._width))
        self._buffer = np.concatenate(
            [self._buffer, np.repeat(self._buffer[-1:], self._half, axis=0)]
        )
        out = self._emit()
        self._buffer = None
        return out

    def _emit(self) -> np.ndarray:
        span = 2 * self._half + 1
        count = self._buffer.shape[0] - span + 1
        if count <= 0:
            return self._buffer[:0]
        out = sum(w * self._buffer[i : i + count] for i, w in enumerate(self._weights) if w != 0.0)
        self._buffer = self._buffer[count:]
        return out


def _sma_weights() -> np.ndarray:
    return np.full(2 * _SMA_HALF + 1, 1.0 / (2 * _SMA_HALF + 1))


def _delta_weights() -> np.ndarray:
    k = np.arange(-_DELTA_HALF, _DELTA_HALF + 1, dtype=np.float64)
    return k / (2.0 * np.sum(k[_DELTA_HALF + 1 :] ** 2))


class _RowQueue:
    """Rows arriving in blocks, taken out in other blocks."""

    def __init__(self, width: int):
        self._parts: list[np.ndarray] = []
        self._width = width
        self.size = 0

    def push(self, rows: np.ndarray) -> None:
        if rows.shape[0]:
            self._parts.append(rows)
            self.size += rows.shape[0]

    def pop(self, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros((0, self._width))
        joined = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        self._parts = [joined[count:]] if joined.shape[0] > count else []
        self.size -= count
        return joined[:count]


# -- public API ----------------------------------------------------------------------------------


def checked_samples(samples, source: str = "<samples>") -> np.ndarray:
    """``samples`` as 1-D float32, after checking that it is mono, float and finite.

    Args:
        samples: audio samples in [-1, 1].
        source: name used in error messages (e.g. the audio file).

    Returns:
        The samples as float32 (no copy when they already are).

    Raises:
        MediaError: not 1-D, not floating point, or NaN / infinite values.

    >>> checked_samples([0.0, 0.5]).dtype
    dtype('float32')
    """
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise MediaError(f"{source}: audio must be 1-D mono samples, got shape {samples.shape}")
    if not np.issubdtype(samples.dtype, np.floating):
        raise MediaError(f"{source}: audio must be float samples in [-1, 1], got {samples.dtype}")
    samples = samples.astype(np.float32, copy=False)
    if not np.all(np.isfinite(samples)):
        raise MediaError(f"{source}: audio contains NaN or infinite samples")
    return samples


class AudioLLDExtractor:
    """Streaming IS10 LLD extractor: feed samples in any pieces, get 76-dim rows once final.

    Rows come out a few frames behind the input (the pitch window may reach
    20 ms past its frame, pitch smoothing looks one frame ahead, jitter up to
    696 samples, smoothing and deltas three frames); :meth:`flush` returns the
    rest, zero-padding the last partial frame. The concatenated rows equal
    :func:`extract_audio_lld` on the whole signal (up to float rounding).
    Memory holds a few blocks of frames, never the recording. After
    :meth:`flush` the extractor is ready for a new recording.

    Args:
        sample_rate: must be 16000 (emorec's frame grid).
        loudness: one of :data:`LOUDNESS_MODES`.
        pitch_window: one of :data:`PITCH_WINDOWS`.
        block_frames: frames analysed at once (bounds temporary memory).
        source: name used in error messages (e.g. the audio file).

    Raises:
        ConfigError: an argument has an unsupported value.

    >>> import numpy as np
    >>> extractor = AudioLLDExtractor()
    >>> tone = np.sin(2 * np.pi * 200 * np.arange(8000) / 16000).astype(np.float32)
    >>> rows = [extractor.push(tone[:3000]), extractor.push(tone[3000:]), extractor.flush()]
    >>> sum(r.shape[0] for r in rows), rows[0].shape[1]
    (13, 76)
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        loudness: str = DEFAULT_LOUDNESS,
        pitch_window: str = DEFAULT_PITCH_WINDOW,
        block_frames: int = DEFAULT_BLOCK_FRAMES,
        source: str = "<samples>",
    ):
        if sample_rate != SAMPLE_RATE:
            raise ConfigError(
                f"{source}: audio LLDs are defined at {SAMPLE_RATE} Hz, got {sample_rate} Hz "
                "(emorec.media.audio.read_audio resamples)"
            )
        for what, value, allowed in (
            ("loudness", loudness, LOUDNESS_MODES),
            ("pitch_window", pitch_window, tuple(PITCH_WINDOWS)),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"{source}: unknown {what} {value!r} (expected one of {', '.join(allowed)})"
                )
        if block_frames < 1:
            raise ConfigError(f"{source}: block_frames must be >= 1, got {block_frames}")
        self.source = source
        self.loudness = loudness
        self.pitch_window = pitch_window
        self._window = PITCH_WINDOWS[pitch_window]
        self._block = block_frames
        self._reset()

    def _reset(self) -> None:
        self._pending = np.zeros(0, np.float32)  # samples after the last complete frame
        self._wave = np.zeros(0, np.float32)  # samples from frame self._jitter_next on
        self._frames_in = 0  # complete frames received
        self._pitch_next = 0  # first frame without a pitch candidate
        self._jitter_next = 0  # first frame without jitter
        self._f0_waiting = np.zeros(0)  # F0final of frames self._jitter_next.. awaiting jitter
        self._pitch = _PitchSmoother()
        self._jitter = _JitterTracker()
        self._spectral = _RowQueue(_NUM_SPECTRAL)
        self._voicing = _RowQueue(3)
        self._jitter_rows = _RowQueue(3)
        self._sma = _Centred(_SMA_HALF, _sma_weights(), NUM_BASE_LLDS)
        self._delta = _Centred(_DELTA_HALF, _delta_weights(), NUM_BASE_LLDS)
        self._sma_waiting = _RowQueue(NUM_BASE_LLDS)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; return the rows that became final.

        Args:
            samples: 1-D float samples in [-1, 1] at 16 kHz (any length, may be 0).

        Returns:
            ``(k, 76)`` float32, columns as :data:`LLD_NAMES`.

        Raises:
            MediaError: ``samples`` is not 1-D or holds NaN or infinity.
        """
        samples = checked_samples(samples, self.source)
        outputs = []
        step = self._block * FRAME_SAMPLES
        for begin in range(0, samples.size, step):
            self._pending = np.concatenate([self._pending, samples[begin : begin + step]])
            whole = self._pending.size // FRAME_SAMPLES
            if whole:
                frames = self._pending[: whole * FRAME_SAMPLES].reshape(whole, FRAME_SAMPLES)
                self._pending = self._pending[whole * FRAME_SAMPLES :].copy()
                outputs.append(self._advance(frames, final=False))
        return self._joined(outputs)

    def flush(self) -> np.ndarray:
        """Finish the recording (zero-padding its last partial frame) and return the remaining rows.

        Returns:
            ``(k, 76)`` float32, columns as :data:`LLD_NAMES`.
        """
        frames = np.zeros((0, FRAME_SAMPLES), np.float32)
        if self._pending.size:
            frames = np.zeros((1, FRAME_SAMPLES), np.float32)
            frames[0, : self._pending.size] = self._pending
        result = self._joined([self._advance(frames, final=True)])
        logger.debug("%s: %d frames of audio LLDs", self.source, self._frames_in)
        self._reset()
        return result

    @staticmethod
    def _joined(outputs: list[np.ndarray]) -> np.ndarray:
        rows = [o for o in outputs if o.shape[0]]
        if not rows:
            return np.zeros((0, NUM_LLDS), np.float32)
        return np.concatenate(rows).astype(np.float32)

    def _wave_from(self, frame: int, length: int) -> np.ndarray:
        """``length`` samples from the start of ``frame``, zeros past what has arrived."""
        begin = (frame - self._jitter_next) * FRAME_SAMPLES
        piece = self._wave[begin : begin + length]
        if piece.size < length:
            piece = np.concatenate([piece, np.zeros(length - piece.size, np.float32)])
        return piece

    def _advance(self, frames: np.ndarray, final: bool) -> np.ndarray:
        if frames.shape[0]:
            self._spectral.push(_spectral_descriptors(frames, self.loudness))
            self._wave = np.concatenate([self._wave, frames.ravel()])
            self._frames_in += frames.shape[0]
        self._run_pitch(final)
        self._run_jitter(final)

        ready = min(self._spectral.size, self._voicing.size, self._jitter_rows.size)
        spectral, voicing = self._spectral.pop(ready), self._voicing.pop(ready)
        # openSMILE's column order: F0finEnv, voicingFinalUnclipped, F0final, jitter, shimmer.
        base = np.concatenate(
            [spectral, voicing[:, 1:3], voicing[:, :1], self._jitter_rows.pop(ready)], axis=1
        )
        smoothed = self._sma.push(base)
        if final:
            smoothed = np.concatenate([smoothed, self._sma.flush()])
        self._sma_waiting.push(smoothed)
        deltas = self._delta.push(smoothed)
        if final:
            deltas = np.concatenate([deltas, self._delta.flush()])
        return np.concatenate([self._sma_waiting.pop(deltas.shape[0]), deltas], axis=1)

    def _run_pitch(self, final: bool) -> None:
        # Frames whose pitch window has fully arrived (or is zero-padded at the end).
        if final:
            stop = self._frames_in
        else:
            stop = max(0, (self._frames_in * FRAME_SAMPLES - self._window) // FRAME_SAMPLES + 1)
        count = stop - self._pitch_next
        pitch = np.zeros((0, 3))
        if count > 0:
            span = self._wave_from(self._pitch_next, (count - 1) * FRAME_SAMPLES + self._window)
            windows = np.lib.stride_tricks.sliding_window_view(span, self._window)[::FRAME_SAMPLES]
            f0, voicing = _pitch_descriptors(windows)
            pitch = self._pitch.push(f0, voicing)
            self._pitch_next = stop
        if final:
            pitch = np.concatenate([pitch, self._pitch.flush()])
        self._voicing.push(pitch)
        self._f0_waiting = np.concatenate([self._f0_waiting, pitch[:, 0]])

    def _run_jitter(self, final: bool) -> None:
        # Frames whose F0final is known and whose periods' samples have all arrived.
        count = self._f0_waiting.size
        if not final:
            arrived = (self._frames_in * FRAME_SAMPLES - _JITTER_LOOKAHEAD) // FRAME_SAMPLES
            count = min(count, max(0, arrived - self._jitter_next))
        if count == 0:
            return
        wave = self._wave_from(self._jitter_next, count * FRAME_SAMPLES + _JITTER_LOOKAHEAD)
        self._jitter_rows.push(self._jitter.process(wave, self._f0_waiting[:count]))
        self._f0_waiting = self._f0_waiting[count:]
        self._wave = self._wave[count * FRAME_SAMPLES :]
        self._jitter_next += count


def extract_audio_lld(
    samples: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    loudness: str = DEFAULT_LOUDNESS,
    pitch_window: str = DEFAULT_PITCH_WINDOW,
) -> np.ndarray:
    """The 76 IS10 LLDs (38 smoothed descriptors, then their deltas) of each 40 ms frame.

    Args:
        samples: 1-D float samples in [-1, 1] (e.g. from
            :func:`emorec.media.audio.read_audio`).
        sample_rate: must be 16000, the rate of emorec's frame grid.
        loudness: one of :data:`LOUDNESS_MODES` (default: as openSMILE computes it).
        pitch_window: one of :data:`PITCH_WINDOWS` (default: the 40 ms frame).

    Returns:
        ``(ceil(len(samples) / 640), 76)`` float32; column ``j`` is
        :data:`LLD_NAMES` ``[j]``; the last frame is zero-padded.

    Raises:
        ConfigError: ``sample_rate``, ``loudness`` or ``pitch_window`` is not supported.
        MediaError: ``samples`` is not 1-D or holds NaN or infinity.

    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> tone = sum(0.8**k * np.sin(2 * np.pi * 300 * k * t) for k in range(1, 11))
    >>> lld = extract_audio_lld((0.1 * tone).astype(np.float32))
    >>> lld.shape, round(float(lld[12, LLD_NAMES.index("F0final_sma")]) / 300, 2)
    ((25, 76), 1.0)
    """
    extractor = AudioLLDExtractor(sample_rate, loudness=loudness, pitch_window=pitch_window)
    samples = checked_samples(samples, extractor.source)
    out = np.empty((-(-samples.size // FRAME_SAMPLES), NUM_LLDS), np.float32)
    done = 0
    step = DEFAULT_BLOCK_FRAMES * FRAME_SAMPLES
    # Block by block into the preallocated output: memory beyond it stays a few blocks.
    for begin in range(0, samples.size, step):
        rows = extractor.push(samples[begin : begin + step])
        out[done : done + rows.shape[0]] = rows
        done += rows.shape[0]
    rows = extractor.flush()
    out[done : done + rows.shape[0]] = rows
    if done + rows.shape[0] != out.shape[0]:
        raise AssertionError(f"{done + rows.shape[0]} rows for {out.shape[0]} frames")
    return out

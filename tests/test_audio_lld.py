"""emorec.features.audio_lld and .functionals: names, shapes, values against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from emorec.errors import ConfigError, MediaError
from emorec.features.audio_lld import (
    LLD_NAMES,
    NUM_BASE_LLDS,
    AudioLLDExtractor,
    extract_audio_lld,
)
from emorec.features.functionals import (
    FUNCTIONALS,
    audio_functionals,
    functional_names,
    window_bounds,
)
from emorec.schema import FRAME_SAMPLES, SAMPLE_RATE

RNG = np.random.default_rng(1234)


def col(name: str) -> int:
    return LLD_NAMES.index(name)


def tone(f0: float, seconds: float = 1.0, harmonics: int = 1, amplitude: float = 0.3):
    """Sum of ``harmonics`` sines at k * f0 with amplitudes 0.8**k, peak-normalised."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(0.8**k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, harmonics + 1))
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


def pulse_train(period: float, seconds: float, jitter: float = 0.0, shimmer: float = 0.0):
    """Unit pulses every ``period`` samples, each period scaled by 1 +- jitter, amplitude 1 +- shimmer."""
    rng = np.random.default_rng(7)
    x = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    t = 0.0
    while t < x.size - 1:
        x[int(round(t))] = 0.5 * (1.0 + shimmer * rng.uniform(-1, 1))
        t += period * (1.0 + jitter * rng.uniform(-1, 1))
    return x


# -- names and shapes ---------------------------------------------------------------------------


def test_names_follow_opensmile_is10():
    assert len(LLD_NAMES) == 76 == 2 * NUM_BASE_LLDS
    assert len(set(LLD_NAMES)) == 76
    assert LLD_NAMES[:3] == ("pcm_loudness_sma", "mfcc_sma[0]", "mfcc_sma[1]")
    assert LLD_NAMES[15:17] == ("mfcc_sma[14]", "logMelFreqBand_sma[0]")
    assert LLD_NAMES[24] == "lspFreq_sma[0]" and LLD_NAMES[31] == "lspFreq_sma[7]"
    assert LLD_NAMES[32:38] == (
        "F0finEnv_sma",
        "voicingFinalUnclipped_sma",
        "F0final_sma",
        "jitterLocal_sma",
        "jitterDDP_sma",
        "shimmerLocal_sma",
    )
    assert LLD_NAMES[38] == "pcm_loudness_sma_de"
    assert LLD_NAMES[39] == "mfcc_sma_de[0]"
    assert LLD_NAMES[75] == "shimmerLocal_sma_de"


@pytest.mark.parametrize("length", [0, 1, 639, 640, 641, 16000, 16001])
def test_one_row_per_started_frame(length):
    out = extract_audio_lld(RNG.uniform(-0.3, 0.3, length).astype(np.float32))
    assert out.shape == (math.ceil(length / FRAME_SAMPLES), 76)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))


def test_silence_is_finite_with_hand_values():
    out = extract_audio_lld(np.zeros(8 * FRAME_SAMPLES, np.float32))
    assert np.all(np.isfinite(out))
    # MFCC 0 of an all-floor mel spectrum: sqrt(2/26) * 26 * ln(1e-8); higher ones vanish.
    np.testing.assert_allclose(
        out[:, col("mfcc_sma[0]")], math.sqrt(2 / 26) * 26 * math.log(1e-8), rtol=1e-5
    )
    np.testing.assert_allclose(out[:, col("mfcc_sma[1]") : col("mfcc_sma[14]") + 1], 0.0, atol=1e-3)
    np.testing.assert_allclose(out[:, col("logMelFreqBand_sma[0]")], math.log(1e-12), rtol=1e-6)
    # LPC of silence is A(z) = 1: the LSPs are the roots of 1 +- z^-9, k pi / 9.
    lsp = out[:, col("lspFreq_sma[0]") : col("lspFreq_sma[7]") + 1]
    np.testing.assert_allclose(lsp, np.tile(np.arange(1, 9) * np.pi / 9, (8, 1)), atol=1e-5)
    assert np.all(out[:, col("pcm_loudness_sma")] == 0)
    assert np.all(out[:, col("F0final_sma")] == 0)
    np.testing.assert_allclose(out[:, NUM_BASE_LLDS:], 0.0, atol=1e-6)  # deltas of constant tracks


# -- values against hand computation ------------------------------------------------------------


def _hamming() -> np.ndarray:
    n = np.arange(FRAME_SAMPLES)
    return 0.54 - 0.46 * np.cos(2 * np.pi * n / (FRAME_SAMPLES - 1))


def _mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)


def _reference_mel_energies(power: np.ndarray, bands: int, low: float, high: float) -> np.ndarray:
    """Triangles on the mel scale written per band (independent of the module's bin-wise table)."""
    bin_hz = SAMPLE_RATE / 1024
    edges = _mel(low) + (_mel(high) - _mel(low)) * np.arange(bands + 2) / (bands + 1)
    out = np.zeros(bands)
    for b in range(bands):
        left, centre, right = edges[b], edges[b + 1], edges[b + 2]
        for n in range(round(low / bin_hz) + 1, round(high / bin_hz)):
            u = _mel(n * bin_hz)
            if left < u <= centre:
                out[b] += power[n] * (u - left) / (centre - left)
            elif centre < u < right:
                out[b] += power[n] * (right - u) / (right - centre)
    return out


def test_stationary_frames_match_hand_computation():
    # The same 640 samples in every frame: smoothing leaves each value as it is, deltas are 0.
    block = RNG.uniform(-0.4, 0.4, FRAME_SAMPLES).astype(np.float32)
    x = np.tile(block, 10)
    out = extract_audio_lld(x, loudness="frame")
    row = out[5].astype(np.float64)
    ham = _hamming()
    intensity = np.sum(ham * block.astype(np.float64) ** 2) / ham.sum()
    assert row[col("pcm_loudness_sma")] == pytest.approx((intensity / 1e-6) ** 0.3, rel=1e-5)

    emphasised = np.concatenate([[0.03 * block[0]], block[1:] - 0.97 * block[:-1]]).astype(
        np.float64
    )
    power = np.abs(np.fft.rfft(emphasised * ham, 1024)) ** 2
    log_mel = np.log(np.maximum(_reference_mel_energies(power, 26, 20.0, 8000.0), 1e-8))
    i = np.arange(15)
    dct = np.cos(np.pi * np.outer(i, np.arange(26) + 0.5) / 26) @ log_mel
    mfcc = math.sqrt(2 / 26) * (1 + 11 * np.sin(np.pi * i / 22)) * dct
    np.testing.assert_allclose(
        row[col("mfcc_sma[0]") : col("mfcc_sma[14]") + 1], mfcc, rtol=2e-4, atol=2e-3
    )
    bands = np.log(np.maximum(_reference_mel_energies(power, 8, 20.0, 6500.0), 1e-12))
    np.testing.assert_allclose(
        row[col("logMelFreqBand_sma[0]") : col("logMelFreqBand_sma[7]") + 1], bands, rtol=1e-4
    )
    np.testing.assert_allclose(out[3:7, NUM_BASE_LLDS : NUM_BASE_LLDS + 32], 0.0, atol=1e-3)


def test_opensmile_loudness_uses_the_first_sample_of_each_frame():
    # 100 Hz cosine: 4 periods per frame, every frame starts at its peak.
    t = np.arange(10 * FRAME_SAMPLES) / SAMPLE_RATE
    x = (0.25 * np.cos(2 * np.pi * 100 * t)).astype(np.float32)
    ham = _hamming()
    first_sample = ham[0] * 0.25**2 / ham.sum()
    whole_frame = np.sum(ham * x[:FRAME_SAMPLES].astype(np.float64) ** 2) / ham.sum()
    quirk = extract_audio_lld(x)[4, col("pcm_loudness_sma")]
    documented = extract_audio_lld(x, loudness="frame")[4, col("pcm_loudness_sma")]
    assert quirk == pytest.approx((first_sample / 1e-6) ** 0.3, rel=1e-5)
    assert documented == pytest.approx((whole_frame / 1e-6) ** 0.3, rel=1e-5)


@pytest.mark.parametrize("mode", ["frame", "opensmile"])
def test_loudness_grows_with_amplitude(mode):
    noise = RNG.uniform(-1, 1, 20 * FRAME_SAMPLES).astype(np.float32)
    levels = [
        extract_audio_lld(a * noise, loudness=mode)[:, col("pcm_loudness_sma")]
        for a in (0.01, 0.05, 0.2, 0.8)
    ]
    for quiet, loud in zip(levels, levels[1:]):
        assert np.all(loud > quiet)
    # (a^2)^0.3: each step of x4 in amplitude is x4^0.6 in loudness.
    np.testing.assert_allclose(levels[3] / levels[2], 4**0.6, rtol=1e-4)


def test_smoothing_and_deltas_by_hand():
    # A loudness staircase: frame i has amplitude growing with i (whole-frame loudness).
    gains = np.array([0.05, 0.1, 0.3, 0.2, 0.6, 0.4, 0.9, 0.1, 0.5, 0.7])
    block = RNG.uniform(-1, 1, FRAME_SAMPLES)
    x = np.concatenate([g * block for g in gains]).astype(np.float32)
    out = extract_audio_lld(x, loudness="frame")
    ham = _hamming()
    raw = (gains**2 * np.sum(ham * block**2) / ham.sum() / 1e-6) ** 0.3
    edge = np.concatenate([[raw[0]], raw, [raw[-1]]])
    sma = (edge[:-2] + edge[1:-1] + edge[2:]) / 3
    np.testing.assert_allclose(out[:, col("pcm_loudness_sma")], sma, rtol=1e-4)
    pad = np.concatenate([[sma[0]] * 2, sma, [sma[-1]] * 2])
    delta = np.array(
        [(pad[t + 3] - pad[t + 1] + 2 * (pad[t + 4] - pad[t])) / 10 for t in range(10)]
    )
    np.testing.assert_allclose(out[:, col("pcm_loudness_sma_de")], delta, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("f0", "harmonics", "pitch_window"),
    [
        (450.0, 1, "frame"),
        (220.0, 10, "frame"),
        (310.0, 10, "frame"),
        (150.0, 1, "is10"),
        (120.0, 10, "is10"),
    ],
)
def test_tone_f0_within_one_percent(f0, harmonics, pitch_window):
    out = extract_audio_lld(tone(f0, harmonics=harmonics), pitch_window=pitch_window)
    inner = out[3:-3]
    assert np.all(np.abs(inner[:, col("F0final_sma")] / f0 - 1) < 0.01)
    assert np.all(np.abs(inner[:, col("F0finEnv_sma")] / f0 - 1) < 0.01)
    assert np.all(inner[:, col("voicingFinalUnclipped_sma")] > 0.75)


def test_low_pure_tone_is_unvoiced_in_a_40ms_window():
    # Subharmonic summation needs resolved harmonics: a 40 ms Gaussian window does not
    # resolve a 120 Hz sinusoid (openSMILE gives the same voicing, below its 0.75 threshold).
    out = extract_audio_lld(tone(120.0))
    assert np.all(out[:, col("F0final_sma")] == 0)
    assert np.all(out[:, col("voicingFinalUnclipped_sma")] < 0.75)


def test_jitter_and_shimmer_of_pulse_trains():
    # 400 Hz pulses; +-j uniform period changes give mean |T_k - T_k-1| / T = 2 j / 3 (plus the
    # rounding of pulse positions to samples), +-s amplitude changes give shimmer 2 s / 3.
    periodic = extract_audio_lld(pulse_train(40.0, 2.0))
    shaky = extract_audio_lld(pulse_train(40.0, 2.0, jitter=0.02, shimmer=0.2))
    steady_pitch = extract_audio_lld(pulse_train(40.0, 2.0, shimmer=0.3))
    inner = slice(3, -3)
    for out in (periodic, shaky, steady_pitch):
        assert np.all(np.abs(out[inner, col("F0final_sma")] / 400.0 - 1) < 0.01)
    for name in ("jitterLocal_sma", "jitterDDP_sma", "shimmerLocal_sma"):
        assert np.all(np.abs(periodic[inner, col(name)]) < 1e-6), name
    assert np.mean(shaky[inner, col("jitterLocal_sma")]) == pytest.approx(2 * 0.02 / 3, rel=0.5)
    assert np.mean(shaky[inner, col("jitterDDP_sma")]) > 0.005
    assert np.mean(shaky[inner, col("shimmerLocal_sma")]) == pytest.approx(2 * 0.2 / 3, rel=0.25)
    assert np.all(np.abs(steady_pitch[inner, col("jitterLocal_sma")]) < 1e-6)
    assert np.mean(steady_pitch[inner, col("shimmerLocal_sma")]) == pytest.approx(0.2, rel=0.25)


def test_unvoiced_frames_have_no_jitter():
    noise = RNG.uniform(-0.3, 0.3, 16000).astype(np.float32)
    out = extract_audio_lld(noise)
    unvoiced = out[:, col("F0final_sma")] == 0
    assert unvoiced.sum() > 10
    for name in ("jitterLocal_sma", "jitterDDP_sma", "shimmerLocal_sma"):
        assert np.all(out[unvoiced, col(name)] == 0)


# -- streaming, determinism, errors -------------------------------------------------------------


@pytest.mark.parametrize("pitch_window", ["frame", "is10"])
def test_streaming_equals_whole(pitch_window):
    x = np.concatenate(
        [
            pulse_train(45.0, 1.3, jitter=0.02, shimmer=0.1),
            np.zeros(1234, np.float32),
            tone(300.0, 1.1, harmonics=8),
            RNG.uniform(-0.2, 0.2, 3333).astype(np.float32),
        ]
    )
    whole = extract_audio_lld(x, pitch_window=pitch_window)
    extractor = AudioLLDExtractor(pitch_window=pitch_window, block_frames=7)
    cuts = np.sort(RNG.integers(0, x.size, 25))
    parts = [extractor.push(piece) for piece in np.split(x, cuts)]
    parts.append(extractor.flush())
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=1e-5, atol=1e-4)
    # flush() leaves the extractor ready for the next recording.
    again = np.concatenate([extractor.push(x), extractor.flush()])
    np.testing.assert_allclose(again, whole, rtol=1e-5, atol=1e-4)


def test_deterministic():
    x = pulse_train(61.0, 1.0, jitter=0.02, shimmer=0.1) + RNG.normal(0, 0.01, 16000).astype(
        np.float32
    )
    np.testing.assert_array_equal(extract_audio_lld(x), extract_audio_lld(x))


def test_bad_input_raises():
    with pytest.raises(ConfigError, match="16000 Hz"):
        extract_audio_lld(np.zeros(100, np.float32), sample_rate=8000)
    with pytest.raises(ConfigError, match="loudness"):
        extract_audio_lld(np.zeros(100, np.float32), loudness="sone")
    with pytest.raises(ConfigError, match="pitch_window"):
        AudioLLDExtractor(pitch_window="100ms")
    with pytest.raises(MediaError, match="1-D"):
        extract_audio_lld(np.zeros((100, 2), np.float32))
    with pytest.raises(MediaError, match="float samples"):
        extract_audio_lld(np.zeros(100, np.int16))
    with pytest.raises(MediaError, match="track.wav: audio contains NaN"):
        AudioLLDExtractor(source="track.wav").push(np.array([0.0, np.nan], np.float32))


# -- functionals --------------------------------------------------------------------------------


def _slow_functionals(tracks: np.ndarray, window: int, mode: str) -> np.ndarray:
    start, stop = window_bounds(len(tracks), window, mode)
    rows = []
    for t in range(len(tracks)):
        w = tracks[start[t] : stop[t]]
        n = len(w)
        std = w.std(axis=0)
        constant = std <= 1e-9 * np.abs(w).max(axis=0)
        x = np.arange(n)
        slope, offset = np.polyfit(x, w, 1) if n > 1 else (np.zeros(w.shape[1]), w[0])
        q1, q2, q3 = np.percentile(w, [25, 50, 75], axis=0)
        values = {
            "amean": w.mean(axis=0),
            "stddev": std,
            "skewness": np.where(constant, 0.0, scipy.stats.skew(w, axis=0)),
            "kurtosis": np.where(constant, 0.0, scipy.stats.kurtosis(w, axis=0, fisher=False)),
            "min": w.min(axis=0),
            "max": w.max(axis=0),
            "range": np.ptp(w, axis=0),
            "quartile1": q1,
            "quartile2": q2,
            "quartile3": q3,
            "iqr1-3": q3 - q1,
            "linregc1": slope,
            "linregc2": offset,
            "linregerrQ": np.mean((np.outer(x, slope) + offset - w) ** 2, axis=0),
        }
        rows.append(np.stack([values[name] for name in FUNCTIONALS], axis=1).ravel())
    return np.array(rows)


@pytest.mark.parametrize("mode", ["centred", "causal"])
@pytest.mark.filterwarnings("ignore:Precision loss")
def test_functionals_match_direct_computation(mode):
    tracks = RNG.normal(size=(300, 4)) * [1.0, 10.0, 0.01, 1.0] + [0.0, 200.0, 0.0, 5.0]
    tracks[40:200, 3] = 5.0  # constant stretch: skewness and kurtosis 0
    fast = audio_functionals(tracks, 75, mode)
    assert fast.shape == (300, 4 * len(FUNCTIONALS))
    slow = _slow_functionals(tracks, 75, mode)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)


def test_functional_names_and_subset():
    names = functional_names()
    assert len(names) == 76 * len(FUNCTIONALS)
    assert names[0] == "pcm_loudness_sma_amean" and names[-1] == "shimmerLocal_sma_de_linregerrQ"
    tracks = RNG.normal(size=(20, 3))
    subset = audio_functionals(tracks, 5, functionals=("max", "amean"))
    full = audio_functionals(tracks, 5).reshape(20, 3, len(FUNCTIONALS))
    np.testing.assert_allclose(
        subset.reshape(20, 3, 2)[..., 0], full[..., FUNCTIONALS.index("max")], rtol=1e-6
    )
    np.testing.assert_allclose(
        subset.reshape(20, 3, 2)[..., 1], full[..., FUNCTIONALS.index("amean")], rtol=1e-6
    )


def test_functionals_of_lld_output_and_errors():
    lld = extract_audio_lld(tone(300.0, 4.0, harmonics=8))
    out = audio_functionals(lld)
    assert out.shape == (100, 76 * len(FUNCTIONALS))
    assert np.all(np.isfinite(out))
    with pytest.raises(ConfigError, match="window mode"):
        audio_functionals(lld, mode="future")
    with pytest.raises(ConfigError, match="unknown functionals"):
        audio_functionals(lld, functionals=("median",))
    with pytest.raises(ConfigError, match="NaN"):
        audio_functionals(np.full((3, 2), np.nan))

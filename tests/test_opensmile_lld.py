"""emorec.features.opensmile_lld, and emorec's own LLDs compared with openSMILE on real speech.

The comparisons need the optional ``opensmile`` package (``pip install
emorec[opensmile]``, research / non-commercial licence; CI installs it) and
``espeak-ng``; they are skipped, with the reason, where either is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import lfilter

from emorec.errors import ConfigError
from emorec.features import opensmile_lld as osl
from emorec.features.audio_lld import LLD_NAMES, NUM_BASE_LLDS, extract_audio_lld
from emorec.media.audio import read_audio
from emorec.schema import FRAME_SAMPLES, SAMPLE_RATE

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Emotion recognition needs robust pitch and loudness features, even in noisy rooms.",
    "Would you please call me back tomorrow morning before nine o'clock?",
)
VOICES = ("en-us", "en+f3")  # a male and a female espeak-ng voice
# Descriptors whose definitions emorec follows exactly; they must agree with openSMILE.
STRICT = (
    "pcm_loudness_sma",
    *(f"mfcc_sma[{i}]" for i in range(15)),
    *(f"logMelFreqBand_sma[{i}]" for i in range(8)),
    *(f"lspFreq_sma[{i}]" for i in range(8)),
    "F0finEnv_sma",
    "voicingFinalUnclipped_sma",
    "F0final_sma",
)


def col(name: str) -> int:
    return LLD_NAMES.index(name)


def correlations(ours: np.ndarray, theirs: np.ndarray, rows=None) -> dict[str, float]:
    """Pearson correlation of every column (NaN where a column is constant)."""
    rows = slice(None) if rows is None else rows
    out = {}
    for j, name in enumerate(LLD_NAMES):
        a, b = ours[rows, j].astype(np.float64), theirs[rows, j].astype(np.float64)
        out[name] = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return out


def espeak(text: str, voice: str, tmp_path) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng) - no real speech")
    wav = tmp_path / f"{voice}-{abs(hash(text))}.wav"
    subprocess.run([exe, "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
    samples = read_audio(wav)  # 22.05 kHz -> 16 kHz
    return np.concatenate([samples, np.zeros(-samples.size % FRAME_SAMPLES, np.float32)])


def vowel(f0: float, jitter: float, shimmer: float, seed: int, seconds: float = 1.0) -> np.ndarray:
    """Pulses with uniform period and amplitude perturbations through three formant resonators."""
    rng = np.random.default_rng(seed)
    pulses = np.zeros(int(seconds * SAMPLE_RATE))
    t = 0.0
    while t < pulses.size - 1:
        pulses[int(round(t))] = 1.0 + shimmer * rng.uniform(-1, 1)
        t += SAMPLE_RATE / f0 * (1.0 + jitter * rng.uniform(-1, 1))
    y = lfilter([1.0], [1.0, -0.9], pulses)
    for freq, bandwidth in ((800.0, 80.0), (1500.0, 90.0), (2800.0, 120.0)):
        r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
        y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * freq / SAMPLE_RATE), r * r], y)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture(scope="module")
def opensmile_module():
    return pytest.importorskip("opensmile", reason="optional extra: pip install emorec[opensmile]")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("espeak")
    return [espeak(text, voice, tmp) for voice in VOICES for text in SENTENCES]


# -- without the package ------------------------------------------------------------------------


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # makes "import opensmile" fail
    osl.config_path.cache_clear()
    osl._extractor.cache_clear()
    with pytest.raises(osl.OpensmileMissingError) as caught:
        osl.opensmile_lld(np.zeros(1000, np.float32))
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ImportError)
    assert "pip install emorec[opensmile]" in str(caught.value)
    assert "research/non-commercial" in str(caught.value)
    assert not osl.is_available()
    osl.config_path.cache_clear()


def test_patch_config_sets_keys_per_section():
    text = "[a:cFramer]\nframeSize = 0.025\nframeStep = 0.010\n[b:cFramer]\nframeSize = 0.060\n"
    patched = osl.patch_config(text, {("a", "frameStep"): "0.040", ("b", "frameSize"): "0.040"})
    assert (
        patched
        == "[a:cFramer]\nframeSize = 0.025\nframeStep = 0.040\n[b:cFramer]\nframeSize = 0.040\n"
    )
    with pytest.raises(ConfigError, match="not found"):
        osl.patch_config(text, {("b", "frameStep"): "0.040"})


# -- with openSMILE -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [641, 3 * FRAME_SAMPLES, 16000])
@pytest.mark.parametrize("pitch_window", ["frame", "is10"])
def test_same_grid_and_names_as_emorec(opensmile_module, length, pitch_window):
    x = np.random.default_rng(length).uniform(-0.3, 0.3, length).astype(np.float32)
    theirs = osl.opensmile_lld(x, pitch_window=pitch_window)
    ours = extract_audio_lld(x, pitch_window=pitch_window)
    assert theirs.shape == ours.shape == (-(-length // FRAME_SAMPLES), 76)
    assert theirs.dtype == np.float32
    assert osl.OpensmileLLD(pitch_window).feature_names() == LLD_NAMES


def test_config_uses_40ms_frames(opensmile_module):
    text = osl.config_path("frame").read_text()
    assert text.count("frameStep = 0.040") == 2 and text.count("frameSize = 0.040") == 2
    assert "frameSize = 0.060" in osl.config_path("is10").read_text()


def test_agrees_with_opensmile_on_real_speech(opensmile_module, speech):
    ours = np.concatenate([extract_audio_lld(x) for x in speech])
    theirs = np.concatenate([osl.opensmile_lld(x) for x in speech])
    voiced = theirs[:, col("F0final_sma")] > 0
    assert voiced.sum() > 30, "the female voice must give voiced frames"
    every = correlations(ours, theirs)
    in_voice = correlations(ours, theirs, voiced)
    table = "\n".join(f"{n:30s} all {every[n]:6.3f} voiced {in_voice[n]:6.3f}" for n in LLD_NAMES)
    for name in STRICT:
        delta = name.replace("_sma", "_sma_de", 1)
        assert every[name] >= 0.9, f"{name}\n{table}"
        assert every[delta] >= 0.9, f"{delta}\n{table}"
        if name not in ("F0finEnv_sma", "voicingFinalUnclipped_sma", "F0final_sma"):
            assert in_voice[name] >= 0.9, f"{name} (voiced)\n{table}"
    # Pitch is exactly openSMILE's except in the last two frames of each recording (openSMILE's
    # last frame repeats the previous frame's unsmoothed pitch).
    rows, offset = [], 0
    for x in speech:
        frames = x.size // FRAME_SAMPLES
        rows.append(offset + np.arange(frames - 2))
        offset += frames
    rows = np.concatenate(rows)
    # (Voicing differs in a few near-silent frames, where SHS peaks are nearly equal.)
    for name in ("F0final_sma", "F0finEnv_sma"):
        np.testing.assert_allclose(
            ours[rows, col(name)], theirs[rows, col(name)], rtol=1e-3, atol=1e-3
        )


def test_is10_pitch_window_agrees_on_real_speech(opensmile_module, speech):
    ours = np.concatenate([extract_audio_lld(x, pitch_window="is10") for x in speech])
    theirs = np.concatenate([osl.opensmile_lld(x, pitch_window="is10") for x in speech])
    every = correlations(ours, theirs)
    for name in ("F0final_sma", "F0finEnv_sma", "voicingFinalUnclipped_sma", "shimmerLocal_sma"):
        assert every[name] >= 0.9, f"{name}: {every[name]:.3f}"
    # The 60 ms window finds more voiced frames than the 40 ms one.
    frame_voiced = np.mean(
        np.concatenate([extract_audio_lld(x)[:, col("F0final_sma")] for x in speech]) > 0
    )
    assert np.mean(ours[:, col("F0final_sma")] > 0) > frame_voiced + 0.1


def test_jitter_and_shimmer_track_opensmile(opensmile_module):
    # Voiced (F0 above 250 Hz, resolved in a 40 ms window) with jitter and shimmer changing
    # every second: both implementations must follow the same changes.
    levels = [
        (0.0, 0.0),
        (0.005, 0.0),
        (0.01, 0.05),
        (0.02, 0.1),
        (0.03, 0.2),
        (0.0, 0.3),
        (0.04, 0.0),
    ]
    x = np.concatenate([vowel(260.0 + 10 * k, j, s, seed=k) for k, (j, s) in enumerate(levels)])
    ours, theirs = extract_audio_lld(x), osl.opensmile_lld(x)
    every = correlations(ours, theirs)
    assert np.mean(theirs[:, col("F0final_sma")] > 0) > 0.8
    for name in ("jitterLocal_sma", "jitterDDP_sma"):
        assert every[name] >= 0.8, f"{name}: {every[name]:.3f}"
    assert every["shimmerLocal_sma"] >= 0.9, every["shimmerLocal_sma"]
    per_second = (
        ours[: 25 * len(levels), col("jitterLocal_sma")].reshape(len(levels), 25).mean(axis=1)
    )
    assert per_second[-1] > 3 * per_second[1]  # 4 % jitter >> 0.5 % jitter
    assert ours.shape[1] == 2 * NUM_BASE_LLDS

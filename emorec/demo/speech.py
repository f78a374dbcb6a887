"""Speech-like audio: a glottal source cut into syllables, shaped by vowel formants.

Arousal drives the strongest cues: loudness (+-12 dB), pitch (+-0.45 octave)
and syllable rate. Valence brightens or darkens the voice (the level of the
band above 1.5 kHz, +-8 dB), a weaker cue. All cues follow the curves sample by sample, so every 40 ms frame
carries its own label.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

from emorec.demo.curves import EmotionCurve
from emorec.demo.spec import Voice
from emorec.schema import FRAME_PERIOD

# (F1, F2, F3) in Hz of a, e, i, o, u for an adult male tract; scaled per voice.
_VOWELS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([90.0, 110.0, 170.0])
_LOUDNESS_DB = 12.0  # gain at arousal +-1
_PITCH_OCTAVES = 0.45  # F0 shift at arousal +-1
# Valence scales the band above 1.5 kHz by +-8 dB (brighter when positive):
# above the first formant, where vowel identity moves the spectrum least.
_TILT_SPLIT_HZ = 1500.0
_TILT_DB = 8.0
_VOWEL_RMS = 0.05  # vowel level at arousal 0, before the loudness gain
_NOISE_RMS = 0.002
_ATTACK_S = 0.015
_RELEASE_S = 0.03


@dataclasses.dataclass(frozen=True)
class Syllable:
    """A syllable's span in samples, its vowel and whether it starts with a fricative."""

    start: int
    stop: int
    vowel: int
    fricative: bool
    pitch: float  # per-syllable intonation factor


def _schedule(curve: EmotionCurve, num_samples: int, rate: int, rng) -> list[Syllable]:
    """Lay out syllables and pauses; higher arousal gives shorter syllables and pauses."""
    duration = num_samples / rate
    syllables = []
    t = float(rng.uniform(0.0, 0.15))
    left_in_word = int(rng.integers(2, 7))
    while t < duration:
        arousal = float(curve([t])[0, 0])
        length = rng.uniform(0.8, 1.2) * (0.22 - 0.08 * arousal)
        start, stop = int(t * rate), min(num_samples, int((t + length) * rate))
        if stop - start > int(0.05 * rate):
            syllables.append(
                Syllable(start, stop, int(rng.integers(len(_VOWELS))), bool(rng.random() < 0.4),
                         float(np.exp(rng.normal(0, 0.04))))
            )
        t += length
        left_in_word -= 1
        if left_in_word == 0:
            # Pauses between words stay short (at most ~0.3 s) so that few
            # frames are silent and the loudness cue is nearly always there.
            t += rng.uniform(0.06, 0.2) * (1.0 - 0.4 * arousal)
            left_in_word = int(rng.integers(2, 7))
        else:
            t += rng.uniform(0.01, 0.03)
    return syllables


def _glottal_source(f0: np.ndarray, rate: int, rng) -> np.ndarray:
    """Differentiated Rosenberg-like glottal pulses at the (time-varying) pitch f0."""
    phase = np.cumsum(f0 / rate) + rng.uniform()
    p = phase - np.floor(phase)
    opening, closing = 0.4, 0.16
    flow = np.where(
        p < opening,
        0.5 * (1 - np.cos(np.pi * p / opening)),
        np.where(p < opening + closing, np.cos(0.5 * np.pi * (p - opening) / closing), 0.0),
    )
    return np.diff(flow, prepend=flow[0])


def _resonator(freq: float, bandwidth: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order all-pole resonator with unit gain at DC."""
    r = np.exp(-np.pi * bandwidth / rate)
    a = np.array([1.0, -2 * r * np.cos(2 * np.pi * freq / rate), r * r])
    return np.array([a.sum()]), a


def _envelope(length: int, rate: int) -> np.ndarray:
    """Raised-cosine attack and release over a syllable of ``length`` samples."""
    env = np.ones(length)
    attack = min(int(_ATTACK_S * rate), length // 3)
    release = min(int(_RELEASE_S * rate), length // 3)
    if attack:
        env[:attack] = 0.5 * (1 - np.cos(np.pi * np.arange(attack) / attack))
    if release:
        env[-release:] = 0.5 * (1 + np.cos(np.pi * np.arange(1, release + 1) / release))
    return env


def _valence_tilt(x: np.ndarray, valence: np.ndarray, rate: int) -> np.ndarray:
    """Raise (valence > 0) or lower the band above the split frequency by up to _TILT_DB."""
    sos = signal.butter(2, _TILT_SPLIT_HZ, btype="lowpass", fs=rate, output="sos")
    low = signal.sosfiltfilt(sos, x)  # zero phase, so x - low is the complementary band
    return low + 10.0 ** (_TILT_DB * valence / 20) * (x - low)


def synthesize_speech(
    curve: EmotionCurve, voice: Voice, num_samples: int, rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 audio ``(num_samples,)`` and the per-40-ms-frame mouth opening in [0, 1].

    The speech-like audio follows the emotion curves sample by sample.

    Args:
        curve: the subject's arousal and valence over time (arousal sets loudness, pitch and
            syllable rate; valence the level above 1.5 kHz).
        voice: the subject's pitch, formant scale and source brightness.
        num_samples: length of the recording in samples.
        rate: sample rate in Hz.
        rng: the random generator for syllables, pitch jitter and noise (advanced).

    Returns:
        ``(audio, mouth_open)``: float32 audio ``(num_samples,)`` in ``[-0.99, 0.99]``, and
        float64 ``(num_samples // frame,)`` mouth opening in ``[0, 1]`` per 40 ms frame
        (the mean syllable envelope; the face animation uses it).
    """
    times = np.arange(num_samples) / rate
    # The curves change over seconds: evaluating them every 5 ms and
    # interpolating is exact to ~1e-5 and far cheaper than per sample.
    coarse = np.arange(0.0, times[-1] + 0.01, 0.005)
    coarse_values = curve(coarse)
    emotion = np.stack([np.interp(times, coarse, coarse_values[:, k]) for k in range(2)], axis=1)
    arousal, valence = emotion[:, 0], emotion[:, 1]
    syllables = _schedule(curve, num_samples, rate, rng)

    # Per-syllable intonation, smoothed so pitch glides instead of jumping.
    intonation = np.ones(num_samples)
    for s in syllables:
        intonation[s.start : s.stop] = s.pitch
    intonation = signal.lfilter([0.002], [1, -0.998], intonation - 1) + 1
    vibrato = 1 + 0.006 * np.sin(2 * np.pi * 5.0 * times)
    f0 = voice.f0 * 2.0 ** (_PITCH_OCTAVES * arousal) * intonation * vibrato
    source = _glottal_source(f0, rate, rng)

    # The subject's timbre: a fixed one-pole low-pass on the glottal source.
    source = signal.lfilter([1 - voice.tilt], [1, -voice.tilt], source)

    gain = _VOWEL_RMS * 10.0 ** (_LOUDNESS_DB * arousal / 20)
    noise = rng.standard_normal(num_samples)
    hiss_b, hiss_a = signal.butter(2, 2500, btype="highpass", fs=rate)
    hiss = signal.lfilter(hiss_b, hiss_a, noise)
    hiss /= np.std(hiss) + 1e-12
    out = np.zeros(num_samples)
    mouth = np.zeros(num_samples)
    for s in syllables:
        seg = source[s.start : s.stop]
        formants = _VOWELS[s.vowel] * voice.formant_scale
        formants[0] *= 1 + 0.15 * arousal[s.start]  # louder speech opens the jaw
        for freq, bw in zip(formants, _BANDWIDTHS * voice.formant_scale):
            b, a = _resonator(min(freq, 0.45 * rate), bw, rate)
            seg = signal.lfilter(b, a, seg)
        # Equal RMS for every vowel: loudness then depends on arousal alone.
        seg = seg / (np.sqrt(np.mean(seg**2)) + 1e-12)
        env = _envelope(len(seg), rate)
        if s.fricative:
            burst = min(len(seg) // 3, int(0.04 * rate))
            env_f = np.zeros(len(seg))
            env_f[:burst] = np.hanning(2 * burst)[burst:] if burst else 0
            seg = seg * env + 0.6 * hiss[s.start : s.stop] * env_f
        else:
            seg = seg * env
        out[s.start : s.stop] += seg * gain[s.start : s.stop]
        mouth[s.start : s.stop] = np.maximum(mouth[s.start : s.stop], env)
    out = _valence_tilt(out, valence, rate)
    out += _NOISE_RMS * noise
    frame = int(round(FRAME_PERIOD * rate))
    frames = num_samples // frame
    mouth_open = mouth[: frames * frame].reshape(frames, frame).mean(axis=1)
    return np.clip(out, -0.99, 0.99).astype(np.float32), mouth_open

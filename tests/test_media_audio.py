"""emorec.media.audio and write_wav: decoding, resampling, normalisation, framing, errors."""

from __future__ import annotations

import av
import numpy as np
import pytest
from media_samples import speech_samples

from emorec.errors import ConfigError, MediaError
from emorec.media.audio import frame_audio, normalize_audio, read_audio
from emorec.media.write import write_mp4, write_wav
from emorec.schema import FRAME_SAMPLES, SAMPLE_RATE


def _sine(rate, seconds=1.0, freq=1000.0, amp=0.5, phase=0.0):
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t + phase)


def _quantized(n, rng, channels=None):
    """Random audio that int16 represents exactly (k / 32768)."""
    shape = (n,) if channels is None else (n, channels)
    return (rng.integers(-32768, 32768, size=shape) / 32768.0).astype(np.float32)


def test_wav_round_trip_is_bit_exact_at_16k(tmp_path):
    x = _quantized(5000, np.random.default_rng(0))
    write_wav(tmp_path / "a.wav", x, SAMPLE_RATE)
    y = read_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.shape == (5000,)
    np.testing.assert_array_equal(y, x)


def test_write_wav_clips_and_is_atomic(tmp_path):
    path = tmp_path / "b.wav"
    write_wav(path, np.full(100, 0.25, np.float32), SAMPLE_RATE)
    write_wav(path, np.array([2.0, -2.0, 0.5], np.float32), SAMPLE_RATE)  # replaces the first
    np.testing.assert_array_equal(read_audio(path), [32767 / 32768, -1.0, 0.5])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.wav"]
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "c.wav", np.array([0.0, np.nan]), SAMPLE_RATE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.wav"]


def test_stereo_is_averaged(tmp_path):
    rng = np.random.default_rng(1)
    x = _quantized(3000, rng, channels=2)
    write_wav(tmp_path / "s.wav", x, SAMPLE_RATE)
    np.testing.assert_allclose(
        read_audio(tmp_path / "s.wav"), x.astype(np.float64).mean(axis=1), atol=1e-7
    )
    # A stereo file whose channels cancel out reads as silence.
    write_wav(tmp_path / "z.wav", np.stack([x[:, 0], -x[:, 0]], axis=1), SAMPLE_RATE)
    assert np.abs(read_audio(tmp_path / "z.wav")).max() <= 1 / 32768


@pytest.mark.parametrize("rate", [44_100, 48_000, 8_000])
def test_resampling_keeps_frequency_and_amplitude(tmp_path, rate):
    write_wav(tmp_path / "sine.wav", _sine(rate), rate)
    y = read_audio(tmp_path / "sine.wav")
    assert y.shape == (SAMPLE_RATE,)  # 1 s at any rate -> exactly 16000 samples
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins over 1 s
    middle = slice(1000, SAMPLE_RATE - 1000)  # away from the filter's edge transients
    np.testing.assert_allclose(np.sqrt(np.mean(y[middle] ** 2)), 0.5 / np.sqrt(2), rtol=5e-3)
    np.testing.assert_allclose(y[middle], _sine(SAMPLE_RATE)[middle], atol=2e-3)


def test_stereo_48k_is_averaged_then_resampled(tmp_path):
    left, right = _sine(48_000, amp=0.6), _sine(48_000, freq=3000.0, amp=0.2)
    write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1), 48_000)
    y = read_audio(tmp_path / "st.wav")
    expected = 0.5 * (_sine(SAMPLE_RATE, amp=0.6) + _sine(SAMPLE_RATE, freq=3000.0, amp=0.2))
    middle = slice(1000, SAMPLE_RATE - 1000)
    np.testing.assert_allclose(y[middle], expected[middle], atol=5e-3)


def _write_flac(path, pcm):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_flac_reads_like_the_wav(tmp_path):
    x = _quantized(8000, np.random.default_rng(2)) * 0.5
    pcm = np.round(x * 32768).astype(np.int16)
    _write_flac(tmp_path / "a.flac", pcm)
    np.testing.assert_array_equal(read_audio(tmp_path / "a.flac"), pcm / 32768.0)


def test_flac_cut_at_a_frame_boundary_is_truncated(tmp_path):
    # Cut exactly between two FLAC frames, so every remaining frame decodes cleanly:
    # only the sample count in the stream header betrays the missing half.
    pcm = np.round(_sine(SAMPLE_RATE, seconds=2.0) * 32767).astype(np.int16)
    path = tmp_path / "cut.flac"
    _write_flac(path, pcm)
    with av.open(str(path)) as container:
        positions = [p.pos for p in container.demux() if p.size]
    path.write_bytes(path.read_bytes()[: positions[len(positions) // 2]])
    with pytest.raises(MediaError, match=r"cut\.flac: truncated audio: .* promises 32000 samples"):
        read_audio(path)


@pytest.mark.parametrize("rate", [16_000, 44_100])
def test_audio_from_an_mp4_track_matches_the_source(tmp_path, rate):
    speech = speech_samples(2.0, rate)
    frames = (np.zeros((32, 32, 3), np.uint8) for _ in range(50))
    write_mp4(tmp_path / "v.mp4", frames, fps=25, audio=speech, audio_rate=rate)
    y = read_audio(tmp_path / "v.mp4")
    source = speech if rate == SAMPLE_RATE else _resampled_reference(speech, rate, tmp_path)
    assert y.shape == (2 * SAMPLE_RATE,)
    # AAC is lossy but keeps the waveform's timing and energy.
    assert np.corrcoef(y, source)[0, 1] > 0.99
    np.testing.assert_allclose(np.sum(y**2) / np.sum(source**2), 1.0, atol=0.05)


def _resampled_reference(samples, rate, tmp_path):
    """The 16 kHz version of ``samples`` by the same resampler, through a float-exact wav."""
    write_wav(tmp_path / "ref.wav", samples, rate)
    return read_audio(tmp_path / "ref.wav")


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="nope.wav.*no such"):
        read_audio(tmp_path / "nope.wav")


def test_corrupt_file(tmp_path):
    path = tmp_path / "junk.wav"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match="junk.wav"):
        read_audio(path)


def test_truncated_wav_is_an_error(tmp_path):
    path = tmp_path / "cut.wav"
    write_wav(path, _sine(SAMPLE_RATE), SAMPLE_RATE)
    data = path.read_bytes()
    path.write_bytes(data[: 44 + (len(data) - 44) // 2])  # keep the header, half the samples
    with pytest.raises(MediaError, match=r"cut\.wav: truncated"):
        read_audio(path)


def test_video_without_audio_stream(tmp_path):
    path = tmp_path / "silent.mp4"
    write_mp4(path, (np.zeros((16, 16, 3), np.uint8) for _ in range(5)))
    with pytest.raises(MediaError, match=r"silent\.mp4: has no audio stream"):
        read_audio(path)


def test_zero_length_audio(tmp_path):
    path = tmp_path / "empty.wav"
    write_wav(path, np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(MediaError, match=r"empty\.wav: .*empty"):
        read_audio(path)


def test_normalize_none_is_identity_and_recording_standardises():
    x = (np.random.default_rng(4).normal(0.3, 0.05, 10_000)).astype(np.float32)
    np.testing.assert_array_equal(normalize_audio(x, "none"), x)
    y = normalize_audio(x, "recording")
    assert y.dtype == np.float32
    expected = (x.astype(np.float64) - x.mean(dtype=np.float64)) / x.astype(np.float64).std()
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert abs(float(y.mean())) < 1e-6 and abs(float(y.std()) - 1.0) < 1e-5


def test_normalize_silence_and_bad_mode():
    for silent in (np.zeros(640, np.float32), np.full(640, 0.2, np.float32)):
        y = normalize_audio(silent, "recording")
        assert np.all(np.isfinite(y)) and np.abs(y).max() < 1e-6
    with pytest.raises(ConfigError, match="audio_norm 'peak'"):
        normalize_audio(np.ones(4), "peak")


def test_frame_audio_pads_and_trims():
    x = np.arange(1000, dtype=np.float32)
    frames = frame_audio(x, 3)
    assert frames.shape == (3, FRAME_SAMPLES) and frames.dtype == np.float32
    np.testing.assert_array_equal(frames[0], x[:FRAME_SAMPLES])
    np.testing.assert_array_equal(frames[1, : 1000 - FRAME_SAMPLES], x[FRAME_SAMPLES:])
    assert not frames[1, 1000 - FRAME_SAMPLES :].any() and not frames[2].any()
    np.testing.assert_array_equal(frame_audio(x, 1).ravel(), x[:FRAME_SAMPLES])
    assert frame_audio(x, 0).shape == (0, FRAME_SAMPLES)


def test_speech_wav_helper_writes_real_speech(tmp_path):
    from media_samples import speech_wav

    samples = speech_wav(tmp_path / "s.wav", rate=SAMPLE_RATE, seconds=1.5)
    y = read_audio(tmp_path / "s.wav")
    assert y.shape == samples.shape == (int(1.5 * SAMPLE_RATE),)
    np.testing.assert_allclose(y, samples, atol=1 / 32768)
    # Speech, not a tone or silence: the energy of 25 ms blocks comes and goes.
    blocks = np.sqrt(np.mean(y.reshape(-1, 400) ** 2, axis=1))
    assert blocks.max() > 0.05 and blocks.min() < 0.2 * blocks.max()


# Streaming: iter_audio_blocks / PolyphaseResampler against the whole-signal resample_poly.


def _resample_whole(x, rate):
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, SAMPLE_RATE)
    return resample_poly(np.asarray(x, np.float64), SAMPLE_RATE // g, rate // g).astype(np.float32)


@pytest.mark.parametrize("rate", [44_100, 48_000, 22_050, 8_000])
def test_streamed_blocks_equal_resample_poly_of_the_whole_file(tmp_path, rate):
    from emorec.media.audio import audio_sample_count, iter_audio_blocks

    # An awkward length (not a multiple of the rates' ratio) and full-scale noise,
    # so that the start and end transients of the filter are large.
    x = _quantized(int(rate * 1.3) + 7, np.random.default_rng(rate))
    write_wav(tmp_path / "n.wav", x, rate)
    want = _resample_whole(x, rate)
    blocks = list(iter_audio_blocks(tmp_path / "n.wav", block_samples=1000))
    assert all(b.dtype == np.float32 and len(b) == 1000 for b in blocks[:-1])
    assert 0 < len(blocks[-1]) <= 1000
    got = np.concatenate(blocks)
    assert got.shape == want.shape == (audio_sample_count(tmp_path / "n.wav"),)
    # Filter edges: the first and last 200 samples see the zero padding.
    np.testing.assert_allclose(got[:200], want[:200], rtol=0, atol=1e-7)
    np.testing.assert_allclose(got[-200:], want[-200:], rtol=0, atol=1e-7)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(read_audio(tmp_path / "n.wav"), got)


@pytest.mark.parametrize("rate", [44_100, 48_000, 22_050, 8_000, 11_025])
@pytest.mark.parametrize("n", [1, 6, 441, 5000])
def test_polyphase_resampler_any_push_sizes(rate, n):
    from emorec.media.audio import PolyphaseResampler, resampled_length

    rng = np.random.default_rng(n)
    x = rng.uniform(-1, 1, n).astype(np.float32)
    resampler = PolyphaseResampler(rate, SAMPLE_RATE)
    parts, i = [], 0
    while i < n:
        step = int(rng.integers(1, 700))
        parts.append(resampler.push(x[i : i + step]))
        i += step
    parts.append(resampler.flush())
    got = np.concatenate(parts)
    want = _resample_whole(x, rate)
    assert got.shape == want.shape == (resampled_length(n, rate, SAMPLE_RATE),)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


def test_streaming_keeps_errors_and_counts(tmp_path):
    from emorec.media.audio import audio_sample_count, iter_audio_blocks

    write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(MediaError, match=r"empty\.wav: .*empty"):
        list(iter_audio_blocks(tmp_path / "empty.wav"))
    with pytest.raises(MediaError, match=r"empty\.wav: .*empty"):
        audio_sample_count(tmp_path / "empty.wav")
    path = tmp_path / "cut.wav"
    write_wav(path, _sine(44_100), 44_100)
    data = path.read_bytes()
    path.write_bytes(data[: 44 + (len(data) - 44) // 2])
    with pytest.raises(MediaError, match=r"cut\.wav: truncated"):
        next(iter_audio_blocks(path))
    with pytest.raises(ValueError, match="block_samples"):
        iter_audio_blocks(tmp_path / "empty.wav", block_samples=0)
    # The count pass agrees with the decoded length for a lossy track too.
    speech = speech_samples(1.5, 44_100)
    write_mp4(tmp_path / "v.mp4", (np.zeros((16, 16, 3), np.uint8) for _ in range(38)),
              fps=25, audio=speech, audio_rate=44_100)
    assert audio_sample_count(tmp_path / "v.mp4") == len(read_audio(tmp_path / "v.mp4")) == 24_000


def test_moments_merged_over_blocks_match_numpy():
    from emorec.media.audio import Moments, standardize

    x = np.random.default_rng(5).normal(0.2, 0.3, 12_345).astype(np.float32)
    moments = Moments()
    for block in np.array_split(x, [1, 640, 641, 5000, 12_000]):
        moments.add(block)
    data = x.astype(np.float64)
    assert moments.count == len(x)
    np.testing.assert_allclose(moments.mean, data.mean(), rtol=1e-13)
    np.testing.assert_allclose(moments.std, data.std(), rtol=1e-12)
    np.testing.assert_allclose(
        standardize(x, moments.mean, moments.std), normalize_audio(x, "recording"), rtol=0, atol=1e-6
    )

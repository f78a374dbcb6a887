"""video_appearance: Gabor bank, LBP-TOP codes, per-frame block histograms, PCA."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from emorec.errors import ConfigError, MediaError
from emorec.features import lgbp_top
from emorec.features.lgbp_top import (
    AVEC_SIZED,
    NEIGHBOURS,
    UNIFORM_LUT,
    LgbpTop,
    LgbpTopConfig,
    PCAModel,
    fit_pca,
    gabor_bank,
    gabor_kernel,
    lbp_top_codes,
)


def uniform_label(code: int) -> int:
    """Label of an 8-bit code, from its bit string: uniform codes in order, then 58."""
    def transitions(c):
        bits = format(c, "08b")
        return sum(bits[i] != bits[(i + 1) % 8] for i in range(8))
    uniform = [c for c in range(256) if transitions(c) <= 2]
    return uniform.index(code) if code in uniform else 58


def test_uniform_lut():
    assert UNIFORM_LUT.shape == (256,) and np.bincount(UNIFORM_LUT).tolist() == [1] * 58 + [198]
    # Uniform codes below 30 = 0b11110: 0, 1, 2, 3, 4, 6, 7, 8, 12, 14, 15, 16, 24, 28; so 30 is 14.
    assert [int(UNIFORM_LUT[c]) for c in (0, 1, 2, 3, 5, 30, 67, 255)] == [0, 1, 2, 3, 58, 14, 58, 57]
    assert all(UNIFORM_LUT[c] == uniform_label(c) for c in range(256))


def test_lbp_codes_hand_checked_on_a_tiny_volume():
    v = np.zeros((3, 3, 3))
    v[0] = [[0, 0, 0], [8, 2, 6], [0, 0, 0]]
    v[1] = [[5, 9, 1], [4, 6, 7], [2, 3, 8]]  # centre 6
    v[2] = [[0, 9, 0], [1, 7, 3], [0, 6, 0]]
    xy, xt, yt = (int(c[0, 0, 0]) for c in lbp_top_codes(v))
    # XY (x, y): 7 (1, 0), 8 (1, 1) and 9 (0, -1) are >= 6: bits 0, 1, 6.
    assert xy == 0b01000011 == 67
    # XT on row y = 1 (x, t): 7 (1, 0), 7 (0, +1), 8 (-1, -1), 6 (1, -1): bits 0, 2, 5, 7.
    assert xt == 0b10100101 == 165
    # YT on column x = 1 (y, t): 6 (1, +1), 7 (0, +1), 9 (-1, +1), 9 (-1, 0): bits 1-4.
    assert yt == 0b00011110 == 30
    # A constant volume: every neighbour equals the centre, all bits set.
    assert {int(c) for codes in lbp_top_codes(np.ones((4, 5, 6))) for c in np.unique(codes)} == {255}
    assert lbp_top_codes(np.ones((4, 5, 6)))[0].shape == (2, 3, 4)


def test_gabor_kernel_symmetry_and_orientation():
    for wavelength, gamma in [(4.0, 1.0), (6.0, 0.5)]:
        k0 = gabor_kernel(wavelength, 0.0, gamma=gamma)
        half = int(np.ceil(3 * 0.56 * wavelength))
        assert k0.shape == (2 * half + 1, 2 * half + 1)
        np.testing.assert_allclose(k0.real, k0.real[::-1, ::-1], atol=1e-15)  # even
        np.testing.assert_allclose(k0.imag, -k0.imag[::-1, ::-1], atol=1e-15)  # odd
        assert abs(k0.real.sum()) < 1e-12 and abs(k0.imag.sum()) < 1e-12
        # Rotating the carrier by 90 degrees (towards +y, downwards) is transposing the kernel.
        np.testing.assert_allclose(gabor_kernel(wavelength, np.pi / 2, gamma=gamma), k0.T, atol=1e-15)
    assert len(gabor_bank(LgbpTopConfig())) == 8 and len(gabor_bank(AVEC_SIZED)) == 18


def test_gabor_magnitude_of_a_grating():
    # cos(2 pi x / 4): the matched kernel responds with |0.5 e^{-i w x} + small| = 0.5 (the
    # envelope's spectrum at w is exp(-(0.56 * 2 pi)^2 / 2) = 0.007); the kernel turned 90
    # degrees sees only that leak.
    x = np.arange(64)
    grating = np.tile(np.cos(2 * np.pi * x / 4.0), (64, 1)).astype(np.float32)
    kernels = [gabor_kernel(4.0, 0.0), gabor_kernel(4.0, np.pi / 2)]
    magnitude = lgbp_top.gabor_magnitudes(grating[None], kernels)[:, 0, 16:-16, 16:-16]
    np.testing.assert_allclose(magnitude[0], 0.5, atol=0.01)
    assert magnitude[1].max() < 0.02


def reference_vectors(grey: np.ndarray, config: LgbpTopConfig) -> np.ndarray:
    """LGBP-TOP by the definition, voxel by voxel (scipy's correlate for the Gabor filters)."""
    t_len, h, w = grey.shape
    half, g = config.block // 2, config.grid
    padded = grey[np.clip(np.arange(-1, t_len + 1), 0, t_len - 1)].astype(np.float64)
    kernels = gabor_bank(config)
    rows = np.linspace(0, h - 2, g + 1)
    cols = np.linspace(0, w - 2, g + 1)
    counts = np.zeros((t_len, len(kernels), 3, g * g, 59))
    for k, kernel in enumerate(kernels):
        mag = np.stack([
            np.hypot(ndimage.correlate(f, kernel.real, mode="reflect"), ndimage.correlate(f, kernel.imag, mode="reflect"))
            for f in padded
        ])
        for s in range(t_len):
            for y in range(1, h - 1):
                for x in range(1, w - 1):
                    cell = (np.searchsorted(rows, y - 1, side="right") - 1) * g + np.searchsorted(cols, x - 1, side="right") - 1
                    centre = mag[s + 1, y, x]
                    for p in range(3):
                        code = 0
                        for bit, (a, b) in enumerate(NEIGHBOURS):
                            n = (mag[s + 1, y + b, x + a], mag[s + 1 + b, y, x + a], mag[s + 1 + b, y + a, x])[p]
                            code |= int(n >= centre - lgbp_top.TIE_TOLERANCE) << bit
                        counts[s, k, p, cell, uniform_label(code)] += 1
    out = np.zeros_like(counts)
    for t in range(t_len):
        block = counts[max(0, t - half) : t + half + 1].sum(axis=0)
        out[t] = block / block.sum(axis=-1, keepdims=True)
    return out.reshape(t_len, -1)


def test_vectors_equal_the_definition_for_every_chunking():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, size=(7, 12, 12, 3), dtype=np.uint8)
    config = LgbpTopConfig(wavelengths=(4.0,), orientations=2, grid=2, block=3)
    grey = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops]).astype(np.float32)
    expected = reference_vectors(grey, config)
    assert expected.shape == (7, config.dim) == (7, 1 * 2 * 3 * 4 * 59)
    for chunk in (1, 2, 3, 64):
        vectors = LgbpTop(config, chunk=chunk).transform(iter(crops))
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(vectors, expected, atol=1e-6, err_msg=f"chunk {chunk}")
    np.testing.assert_array_equal(LgbpTop(config).transform(grey), LgbpTop(config).transform(crops))


def test_default_vectors_are_l1_histograms():
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, size=(6, 96, 96, 3), dtype=np.uint8)
    extractor = LgbpTop()
    assert extractor.dim == LgbpTopConfig().dim == 2 * 4 * 3 * 16 * 59 == 22656
    assert AVEC_SIZED.dim == 50976
    vectors = extractor.transform(crops)
    assert vectors.shape == (6, 22656)
    np.testing.assert_allclose(vectors.reshape(6, -1, 59).sum(axis=-1), 1.0, atol=1e-5)
    # A still video: in the XT and YT planes the previous and next frame repeat the centre's
    # row (column), so bits 2 and 6 (same pixel) are set, bits 1 and 7 equal bit 0 and bits 3
    # and 5 equal bit 4: only codes 68 + 131 b0 + 56 b4 = 68, 124, 199, 255 can occur.
    still = LgbpTop(LgbpTopConfig(wavelengths=(4.0,), orientations=1, grid=1, block=1))
    planes = still.transform(np.repeat(crops[:1], 3, axis=0)).reshape(3, 3, 59)
    allowed = sorted({int(UNIFORM_LUT[c]) for c in (68, 124, 199, 255)})
    for plane in (1, 2):
        assert sorted(np.flatnonzero(planes[:, plane].sum(axis=0))) == allowed
    assert np.count_nonzero(planes[0, 0]) > 20  # the XY codes of a random image spread out
    assert LgbpTop().transform([]).shape == (0, 22656)
    with pytest.raises(ValueError, match=r"change size from \(96, 96\) to \(64, 64\) at frame 1"):
        LgbpTop().transform([crops[0], crops[1, :64, :64]])


def test_config_is_checked():
    with pytest.raises(ConfigError, match="block must be an odd number"):
        LgbpTopConfig(block=4)
    with pytest.raises(ConfigError, match="wavelengths must be one or more values >= 2"):
        LgbpTopConfig(wavelengths=())
    assert LgbpTopConfig().to_dict() == {"wavelengths": [4.0, 8.0], "orientations": 4, "grid": 4, "block": 5}


# -- PCA ----------------------------------------------------------------------------------------


def low_rank_data(n=200, d=60, rank=5, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    scales = 2.0 ** -np.arange(rank)
    data = (rng.standard_normal((n, rank)) * scales) @ rng.standard_normal((rank, d)) + 3.0
    return (data + noise * rng.standard_normal((n, d))).astype(np.float32)


def test_pca_reconstructs_and_is_orthonormal():
    data = low_rank_data()
    model = fit_pca(data, dims=5)
    assert model.dims == 5 and model.input_dim == 60
    np.testing.assert_allclose(model.components @ model.components.T, np.eye(5), atol=1e-5)
    np.testing.assert_allclose(model.inverse_transform(model.transform(data)), data, atol=1e-4)
    eigenvalues = np.linalg.eigvalsh(np.cov(data.astype(np.float64), rowvar=False))[::-1][:5]
    np.testing.assert_allclose(model.variance, eigenvalues, rtol=1e-5)
    loadings = model.components[np.arange(5), np.abs(model.components).argmax(axis=1)]
    assert np.all(loadings > 0)
    projected = model.transform(data[:4], found=[1, 0, 1, 0])
    np.testing.assert_array_equal(projected[[1, 3]], 0.0)
    assert np.abs(projected[0]).max() > 0


def test_randomized_pca_agrees_with_the_exact_one(monkeypatch):
    data = low_rank_data(n=400, d=300, rank=12, seed=2, noise=1e-3)
    exact = fit_pca(data, dims=8)
    monkeypatch.setattr(lgbp_top, "EXACT_PCA_LIMIT", 10)
    randomized = fit_pca(data, dims=8)
    np.testing.assert_allclose(randomized.components, exact.components, atol=2e-4)
    np.testing.assert_allclose(randomized.variance, exact.variance, rtol=1e-4)
    np.testing.assert_allclose(randomized.mean, exact.mean, atol=1e-6)


def test_pca_sampling_and_errors():
    data = low_rank_data(n=101)
    rows = np.linspace(0, 100, 11).round().astype(int)
    sampled = fit_pca(data, dims=3, max_samples=11)
    np.testing.assert_allclose(sampled.components, fit_pca(data[rows], dims=3).components, atol=1e-6)
    with pytest.raises(ConfigError, match="PCA to 84 dimensions needs at least 84 frames and features, got 101 x 60"):
        fit_pca(data)
    bad = data.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ConfigError, match="NaN or inf"):
        fit_pca(bad, dims=3)


def test_pca_file_round_trip_and_errors(tmp_path):
    model = fit_pca(low_rank_data(), dims=4)
    path = tmp_path / "pca.npz"
    model.save(path)
    loaded = PCAModel.load(path)
    for name in ("mean", "components", "variance"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert [p.name for p in tmp_path.iterdir()] == ["pca.npz"]  # no temporary left behind
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(MediaError, match=r"bad\.npz: unreadable PCA model file"):
        PCAModel.load(tmp_path / "bad.npz")
    with pytest.raises(MediaError, match=r"none\.npz: PCA model file does not exist"):
        PCAModel.load(tmp_path / "none.npz")
    np.savez(tmp_path / "old.npz", format_version=np.int64(0))
    with pytest.raises(MediaError, match=r"old\.npz: PCA model format version 0, expected 1"):
        PCAModel.load(tmp_path / "old.npz")

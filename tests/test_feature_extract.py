"""Feature sets computed from the media at build time: the extractors' own numbers, the models fitted on train."""

from __future__ import annotations

import numpy as np
import pytest
from media_samples import recola_fixture

from emorec.cli import main as cli_main
from emorec.data import read_recordings
from emorec.features.audio_lld import extract_audio_lld
from emorec.features.functionals import audio_functionals
from emorec.features.geometric import load_mean_shape
from emorec.features.lgbp_top import PCAModel
from emorec.features.sets import MEAN_SHAPE_FILE, PCA_FILE
from emorec.manifest import read_manifest
from emorec.media.audio import read_audio
from emorec.schema import FRAME_SAMPLES


@pytest.fixture(scope="module")
def speech_corpus(tmp_path_factory):
    return recola_fixture(tmp_path_factory.mktemp("recola"), recordings=("train_1", "dev_1"), seconds=2.0,
                          video_size=None)


def test_audio_sets_equal_the_extractors(speech_corpus, tmp_path):
    out = tmp_path / "ds"
    code = cli_main(["build", "recola", str(speech_corpus.root), str(out), "--extract", "audio_lld,audio_functionals",
                     "--modalities", "none", "--lld-pitch-window", "frame", "--functionals-window", "0.4",
                     "--window", "1", "--no-progress", "-q"])
    assert code == 0
    manifest = read_manifest(out)
    assert manifest.feature_dims == {"audio_lld": 76, "audio_functionals": 76 * 14}
    assert manifest.options["features"]["audio_lld"] == {"loudness": "opensmile", "pitch_window": "frame"}
    arrays = dict(read_recordings(out, "train", (), features=("audio_lld", "audio_functionals")))["train_1"]
    samples = read_audio(speech_corpus.recordings["train_1"].audio_path)
    frames = len(arrays["mask"])
    expected = extract_audio_lld(samples[: frames * FRAME_SAMPLES], pitch_window="frame")
    np.testing.assert_allclose(arrays["features_audio_lld"], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(arrays["features_audio_functionals"], audio_functionals(expected, 10),
                               rtol=1e-3, atol=1e-3)


def test_video_sets_fit_on_train_and_zero_without_a_face(tmp_path):
    pytest.importorskip("dlib", reason="dlib is an optional extra (pip install 'emorec[landmarks]')")
    from emorec.features.landmarks68 import DEBIAN_MODEL

    if not DEBIAN_MODEL.is_file():
        pytest.skip(f"{DEBIAN_MODEL} missing (apt-get install libdlib-data)")
    corpus = recola_fixture(tmp_path / "src", recordings=("train_1", "train_2", "dev_1"), seconds=2.0,
                            video_size=(320, 240))
    out = tmp_path / "ds"
    code = cli_main(["build", "recola", str(corpus.root), str(out), "--extract", "video_geometric,video_appearance",
                     "--modalities", "none", "--pca-dims", "4", "--window", "1", "--no-progress", "-q"])
    assert code == 0
    manifest = read_manifest(out)
    assert manifest.feature_dims == {"video_geometric": 286, "video_appearance": 4}
    assert manifest.feature_sets["video_appearance"].model.startswith(PCA_FILE + "#")
    mean_shape = load_mean_shape(out / MEAN_SHAPE_FILE)
    pca = PCAModel.load(out / PCA_FILE)
    assert mean_shape.shape == (49, 2) and pca.dims == 4
    for shard in manifest.shards.values():
        assert any("face found in 50 of 50 frames" in line for line in shard.report)
    arrays = dict(read_recordings(out, "dev", (), features=("video_geometric", "video_appearance")))["dev_1"]
    geo, app = arrays["features_video_geometric"], arrays["features_video_appearance"]
    assert geo.shape == (50, 286) and app.shape == (50, 4)
    assert np.all(np.abs(geo).sum(axis=1) > 0) and np.all(np.isfinite(app))
    # The drifting head moves: the frame-to-frame part (dprev) is zero only on the first frame.
    assert not geo[0, 98:196].any() and np.abs(geo[1:, 98:196]).sum() > 0
    # A rebuild reuses the stored models (same checksums, no refit) and leaves the shards as they were.
    before = {rid: s.sha256 for rid, s in manifest.shards.items()}
    assert cli_main(["build", "recola", str(corpus.root), str(out), "--extract", "video_geometric,video_appearance",
                     "--modalities", "none", "--pca-dims", "4", "--window", "1", "--no-progress", "-q"]) == 0
    assert {rid: s.sha256 for rid, s in read_manifest(out).shards.items()} == before

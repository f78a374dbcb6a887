"""emorec.features.arff: released AVEC 2016 feature ARFFs, their folders and their frame alignment."""

from __future__ import annotations

import re

import numpy as np
import pytest

from emorec.errors import AlignmentError, ConfigError, MediaError
from emorec.features.arff import (
    align_features,
    discover_feature_sets,
    read_feature_arff,
    read_feature_set,
)
from emorec.schema import FRAME_PERIOD

HEADER = """@relation features_video_geometric

@attribute Instance_name string
@attribute frameTime numeric
@attribute geo_1 numeric
@attribute 'geo 2' numeric
@attribute geo_3 numeric

@data
"""
HEADER_LINES = HEADER.count("\n")  # the first data row is on line HEADER_LINES + 1


def feature_values(n: int, dim: int = 3) -> np.ndarray:
    """Known values: row i, feature j = i + j / 10."""
    return np.arange(n)[:, None] + np.arange(dim)[None, :] / 10.0


def write_features(path, recording_id="train_1", n=6, start=0.0, values=None, header=HEADER, cells=None):
    """An AVEC 2016 style feature ARFF with ``n`` rows every 40 ms from ``start``."""
    values = feature_values(n) if values is None else values
    rows = []
    for i, row in enumerate(values):
        texts = [f"{v:.6f}" for v in row] if cells is None or i not in cells else cells[i]
        rows.append(",".join([recording_id, f"{start + i * FRAME_PERIOD:.6f}", *texts]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def test_read_feature_arff(tmp_path):
    path = write_features(tmp_path / "train_1.arff", n=4)
    table = read_feature_arff(path)
    assert table.names == ("geo_1", "geo 2", "geo_3") and table.dim == 3 and len(table) == 4
    assert table.times.dtype == np.float64 and table.values.dtype == np.float32
    np.testing.assert_allclose(table.times, [0.0, 0.04, 0.08, 0.12])
    np.testing.assert_allclose(table.values, feature_values(4), atol=1e-6)
    assert table.instance_names == ("train_1",) * 4 and not table.filled.any()


def test_trailing_class_attribute_is_not_a_feature(tmp_path):
    header = HEADER.replace("@data", "@attribute class numeric\n\n@data")
    path = tmp_path / "dev_1.arff"
    path.write_text(header + "dev_1,0.0,1,2,3,?\ndev_1,0.04,4,5,6,?\n")
    table = read_feature_arff(path)
    assert table.names == ("geo_1", "geo 2", "geo_3")
    np.testing.assert_array_equal(table.values, [[1, 2, 3], [4, 5, 6]])


def _error(path, **kwargs):
    with pytest.raises(MediaError) as info:
        read_feature_arff(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (HEADER.replace("@attribute geo_3 numeric", "@attribute geo_3"), "line 7: malformed @attribute"),
        (HEADER.replace("geo_3 numeric", "geo_3 relational"), "line 7: attribute geo_3 has type 'relational'"),
        (HEADER.replace("@attribute geo_3", "@atribute geo_3"), "line 7: unexpected header line"),
        (HEADER.replace("@data\n", ""), "line 9: unexpected header line 'train_1,0.000000"),
        (HEADER.replace("geo_1", "geo_3"), "line 7: attribute geo_3 declared twice"),
        (HEADER.replace("frameTime", "time"), "no frameTime attribute (attributes: Instance_name, time, geo_1"),
        (HEADER.replace("geo_1 numeric", "geo_1 string"), "feature attribute geo_1 is not numeric"),
    ],
)
def test_malformed_headers_name_the_file_and_problem(tmp_path, header, problem):
    path = write_features(tmp_path / "bad.arff", header=header)
    assert problem in _error(path)


def test_non_numeric_value_names_line_and_column(tmp_path):
    path = write_features(tmp_path / "bad.arff", cells={2: ["0.5", "abc", "0.7"]})
    line = HEADER_LINES + 3
    assert f"line {line}: geo 2 (column 4) is 'abc', not a number" in _error(path)


def test_rows_that_break_the_format(tmp_path):
    path = write_features(tmp_path / "short.arff", cells={1: ["0.5", "0.6"]})
    assert f"line {HEADER_LINES + 2}: 4 fields, 5 attributes" in _error(path)
    path = tmp_path / "time.arff"
    path.write_text(HEADER + "train_1,0.0,1,2,3\ntrain_1,0.0,1,2,3\n")
    assert f"line {HEADER_LINES + 2}: frameTime 0 does not increase" in _error(path)
    path = tmp_path / "empty.arff"
    path.write_text(HEADER)
    assert "no data rows" in _error(path)
    path.write_text(HEADER.replace("@data\n", ""))
    assert "not an ARFF file (no @data section)" in _error(path)
    assert "no such ARFF file" in _error(tmp_path / "none.arff")


def test_nan_and_inf_name_the_frames_or_are_zero_filled(tmp_path):
    cells = {1: ["nan", "1", "2"], 2: ["?", "1", "2"], 5: ["0", "inf", "2"]}
    path = write_features(tmp_path / "gaps.arff", n=7, cells=cells)
    message = _error(path)
    assert "NaN or inf in 3 frames: frames 1-2 (0.04-0.08 s), 5 (0.20 s)" in message
    assert f"first at line {HEADER_LINES + 2}; feature(s) geo_1, geo 2" in message
    table = read_feature_arff(path, fill="zero")
    np.testing.assert_array_equal(table.filled, [0, 1, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(table.values[1], [0, 1, 2])
    np.testing.assert_array_equal(table.values[5], [0, 0, 2])
    np.testing.assert_allclose(table.values[3], [3.0, 3.1, 3.2], atol=1e-6)
    with pytest.raises(ConfigError, match="unknown fill 'mean'"):
        read_feature_arff(path, fill="mean")


def make_corpus(root):
    """A RECOLA-like folder: geometric (one file per recording), audio (arousal/ valence/)."""
    for rid in ("train_1", "dev_1"):
        write_features(root / "features_video_geometric" / f"{rid}.arff", rid)
        for dim in ("arousal", "valence"):
            write_features(root / "features_audio" / dim / f"{rid}.arff", rid)
    (root / "features_audio" / "README.txt").write_text("not a feature file")
    (root / "ratings_gold_standard").mkdir()
    return root


def test_discover_feature_sets(tmp_path):
    root = make_corpus(tmp_path)
    sets = discover_feature_sets(root, ["video_geometric", "audio"])
    assert list(sets) == ["video_geometric", "audio_arousal", "audio_valence"]
    assert sets["audio_valence"] == {
        "dev_1": root / "features_audio" / "valence" / "dev_1.arff",
        "train_1": root / "features_audio" / "valence" / "train_1.arff",
    }
    assert sets["video_geometric"]["train_1"] == root / "features_video_geometric" / "train_1.arff"
    direct = discover_feature_sets(root, ["audio_arousal"])
    assert direct == {"audio_arousal": sets["audio_arousal"]}


def test_discover_errors_name_the_folder(tmp_path):
    root = make_corpus(tmp_path)
    with pytest.raises(ConfigError) as info:
        discover_feature_sets(root, ["video_appearance"])
    assert str(info.value) == (
        f"{root / 'features_video_appearance'}: no such feature folder (feature folders in "
        f"{root}: features_audio, features_video_geometric)"
    )
    (root / "features_ecg").mkdir()
    with pytest.raises(ConfigError, match=re.escape(f"{root / 'features_ecg'}: no ARFF files")):
        discover_feature_sets(root, ["ecg"])
    with pytest.raises(ConfigError, match=re.escape(f"{root / 'missing'}: no such folder")):
        discover_feature_sets(root / "missing", ["ecg"])


def test_feature_dimension_must_agree_within_a_set(tmp_path):
    root = make_corpus(tmp_path)
    other = HEADER.replace("@attribute geo_3 numeric\n", "")
    write_features(root / "features_video_geometric" / "dev_1.arff", "dev_1", values=feature_values(6, 2), header=other)
    files = discover_feature_sets(root, ["video_geometric"])["video_geometric"]
    with pytest.raises(MediaError) as info:
        read_feature_set("video_geometric", files)
    assert str(info.value).startswith(f"{files['train_1']}: 3 features, but {files['dev_1']} has 2")
    renamed = HEADER.replace("geo_3", "geo_three")
    write_features(root / "features_video_geometric" / "dev_1.arff", "dev_1", header=renamed)
    with pytest.raises(MediaError, match="feature 3 is 'geo_3', .* has 'geo_three' there"):
        read_feature_set("video_geometric", files)
    write_features(root / "features_video_geometric" / "dev_1.arff", "dev_1", n=3)
    tables = read_feature_set("video_geometric", files)
    assert [len(t) for t in tables.values()] == [3, 6]


@pytest.mark.parametrize(("alignment", "first_row"), [("end", 1), ("start", 0)])
def test_align_takes_the_row_at_each_frames_label_time(tmp_path, alignment, first_row):
    # Rows at 0, 0.04, ... 0.40 s (11 rows) like the gold standard of a 0.4 s recording.
    table = read_feature_arff(write_features(tmp_path / "train_1.arff", n=11))
    frames = 10 if alignment == "end" else 11
    values, report = align_features(table, frames, alignment, tolerance_s=0.5)
    assert report == [] and values.shape == (frames, 3) and values.dtype == np.float32
    np.testing.assert_allclose(values, feature_values(11)[first_row : first_row + frames], atol=1e-6)


def test_align_pads_and_trims_within_the_tolerance_like_the_labels(tmp_path):
    table = read_feature_arff(write_features(tmp_path / "train_1.arff", n=11))
    values, report = align_features(table, 13, "end", tolerance_s=0.2, reference=("audio", "a.wav"))
    np.testing.assert_allclose(values, feature_values(11)[[*range(1, 11), 10, 10, 10]], atol=1e-6)
    assert report == [
        f"train_1: features {table.path} covers 0.40 s (10 frames), audio a.wav 0.52 s "
        "(13 frames); features padded by holding its last value (3 frames)"
    ]
    values, report = align_features(table, 8, "end", tolerance_s=0.2, recording_id="rec")
    np.testing.assert_allclose(values, feature_values(11)[1:9], atol=1e-6)
    assert report[0].startswith("rec: features") and report[0].endswith("features trimmed (2 frames)")
    with pytest.raises(AlignmentError, match=r"differ by 0\.24 s, more than the 0\.2 s tolerance"):
        align_features(table, 16, "end", tolerance_s=0.2)


def test_align_zeros_missing_rows_and_rejects_other_grids(tmp_path):
    values = feature_values(11)
    path = write_features(tmp_path / "train_1.arff", n=11, values=values)
    text = path.read_text().splitlines()
    # Drop the rows at 0.16 and 0.20 s: frames 3 and 4 ("end") have no row.
    path.write_text("\n".join(t for t in text if ",0.160000," not in t and ",0.200000," not in t) + "\n")
    table = read_feature_arff(path)
    aligned, report = align_features(table, 10, "end", tolerance_s=0.5)
    np.testing.assert_array_equal(aligned[3:5], 0.0)
    np.testing.assert_allclose(aligned[[2, 5]], values[[3, 6]], atol=1e-6)
    assert report == [
        f"train_1: features {path} have no row within half a frame of frames 3-4 "
        "(0.16-0.20 s); those frames are zeros"
    ]
    late = read_feature_arff(write_features(tmp_path / "late.arff", n=11, start=0.6))
    with pytest.raises(AlignmentError, match=r"late\.arff: features start at 0\.60 s, the first frame needs a row at 0\.04 s"):
        align_features(late, 10, "end", tolerance_s=0.5)
    coarse = tmp_path / "coarse.arff"
    coarse.write_text(HEADER + "".join(f"x,{0.08 * i:.2f},1,2,3\n" for i in range(6)))
    with pytest.raises(MediaError, match=r"coarse\.arff: rows are 0\.08 s apart"):
        align_features(read_feature_arff(coarse), 5, "end", tolerance_s=0.5)

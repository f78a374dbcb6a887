"""emorec.media.labels: CSV and AVEC 2016 ARFF readers, frame alignment, errors."""

from __future__ import annotations

import numpy as np
import pytest
from media_samples import gold_values, recola_fixture

from emorec.errors import ConfigError, LabelError
from emorec.media.labels import (
    LabelTrack,
    labels_for_frames,
    read_arff,
    read_label_csv,
    read_recola_gold,
)

# Byte for byte the layout of the AVEC 2016 RECOLA gold standard.
AVEC_ARFF = """@relation GoldStandard

@attribute Instance_name string
@attribute frameTime numeric
@attribute GoldStandard numeric

@data

train_1,0.000000,-0.123000
train_1,0.040000,-0.120500
train_1,0.080000,0.015000
train_1,0.120000,0.250000
"""


def _write(path, text, newline="\n"):
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def test_read_avec_arff(tmp_path):
    times, values = read_arff(_write(tmp_path / "train_1.arff", AVEC_ARFF))
    assert times.dtype == np.float64 and values.dtype == np.float32
    np.testing.assert_array_equal(times, [0.0, 0.04, 0.08, 0.12])
    np.testing.assert_array_equal(values, np.float32([-0.123, -0.1205, 0.015, 0.25]))


def test_arff_tolerates_comments_quotes_crlf_and_attribute_order(tmp_path):
    text = (
        "% AVEC 2016 gold standard\n@RELATION 'Gold Standard'\n\n"
        "@ATTRIBUTE GoldStandard NUMERIC\n@attribute 'Instance_name' string\n"
        "@attribute frameTime numeric\n% a comment\n@DATA\n\n"
        "0.5,'dev_9',0.0\n% between rows\n\n-0.5, \"dev_9\", 0.04\n"
    )
    times, values = read_arff(_write(tmp_path / "odd.arff", text, newline="\r\n"))
    np.testing.assert_array_equal(times, [0.0, 0.04])
    np.testing.assert_array_equal(values, [0.5, -0.5])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "train_1,0.000000,-0.1\ntrain_1,0.040000,?\n",
            r"line 10: GoldStandard is not a finite number",
        ),
        ("train_1,0.000000,-0.1\ntrain_1,0.040000,nan\n", r"line 10: GoldStandard is not a finite"),
        ("train_1,0.000000,-0.1\ntrain_1,0.040000,inf\n", r"line 10: GoldStandard is not a finite"),
        ("train_1,0.040000,-0.1\ntrain_1,0.040000,0.2\n", r"line 10: time 0.04 does not increase"),
        ("train_1,0.080000,-0.1\ntrain_1,0.040000,0.2\n", r"line 10: time 0.04 does not increase"),
        ("train_1,0.000000\n", r"line 9: 2 fields, 3 attributes"),
        ("", r"no label rows"),
    ],
)
def test_arff_errors(tmp_path, body, message):
    head = AVEC_ARFF.split("train_1,")[0]
    path = _write(tmp_path / "bad.arff", head + body)
    with pytest.raises(LabelError, match=r"bad\.arff: " + message):
        read_arff(path)


def test_arff_missing_file_and_attribute(tmp_path):
    with pytest.raises(LabelError, match=r"none\.arff: no such"):
        read_arff(tmp_path / "none.arff")
    path = _write(
        tmp_path / "noattr.arff", AVEC_ARFF.replace("GoldStandard numeric", "Rating numeric")
    )
    with pytest.raises(LabelError, match=r"noattr\.arff: missing attribute\(s\) GoldStandard"):
        read_arff(path)
    path = _write(tmp_path / "csv.arff", "time,arousal\n0,1\n")
    with pytest.raises(LabelError, match=r"csv\.arff: "):
        read_arff(path)


def test_read_recola_gold_and_fixture(tmp_path):
    fixture = recola_fixture(tmp_path, recordings=("train_1", "dev_1", "test_1"), video_size=None)
    assert (tmp_path / "recordings_audio" / "test_1.wav").is_file()
    assert not (tmp_path / "ratings_gold_standard" / "arousal" / "test_1.arff").exists()
    rec = fixture.recordings["dev_1"]
    track = read_recola_gold(rec.arousal_path, rec.valence_path)
    assert len(track) == 51 and track.duration == pytest.approx(2.0)  # 0 .. 2 s every 40 ms
    arousal, valence = gold_values(1, np.arange(51) * 0.04)
    np.testing.assert_allclose(track.values, np.stack([arousal, valence], 1), atol=1e-7)
    np.testing.assert_allclose(track.values[:, 0], rec.arousal, atol=1e-7)


def test_read_recola_gold_rejects_different_times(tmp_path):
    a = _write(tmp_path / "a.arff", AVEC_ARFF)
    v = _write(tmp_path / "v.arff", AVEC_ARFF.replace("0.120000", "0.160000"))
    with pytest.raises(LabelError, match=r"a\.arff and .*v\.arff: frame times differ"):
        read_recola_gold(a, v)
    short = _write(tmp_path / "s.arff", AVEC_ARFF.rsplit("train_1", 1)[0])
    with pytest.raises(LabelError, match="frame times differ"):
        read_recola_gold(a, short)


def test_read_label_csv_with_extra_and_reordered_columns(tmp_path):
    path = _write(
        tmp_path / "l.csv",
        "valence,speaker,time,arousal\n0.5,x,0.0,-0.25\n0.25,x,0.04,0.0\n\n0.0,y,0.08,0.75\n",
    )
    track = read_label_csv(path)
    np.testing.assert_array_equal(track.times, [0.0, 0.04, 0.08])
    np.testing.assert_array_equal(track.values, [[-0.25, 0.5], [0.0, 0.25], [0.75, 0.0]])
    assert track.values.dtype == np.float32 and track.duration == pytest.approx(0.08)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"empty label file"),
        ("time,arousal,valence\n", r"no label rows"),
        ("time,arousal\n0,1\n", r"missing column\(s\) valence"),
        ("t,a,v\n0,1,2\n", r"missing column\(s\) time, arousal, valence"),
        ("time,arousal,valence\n0,0.1,0.2\n0.04,nan,0.2\n", r"line 3: arousal is not a finite"),
        ("time,arousal,valence\n0,0.1,0.2\n0.04,0.1,inf\n", r"line 3: valence is not a finite"),
        ("time,arousal,valence\n0,0.1,0.2\n0.04,0.1,\n", r"line 3: valence is not a finite"),
        ("time,arousal,valence\n0,0.1,0.2\n0.04,high,0.2\n", r"line 3: arousal is not a finite"),
        (
            "time,arousal,valence\n0,0,0\n0.04,0,0\n0.04,0,0\n",
            r"line 4: time 0.04 does not increase",
        ),
        (
            "time,arousal,valence\n0,0,0\n0.08,0,0\n0.04,0,0\n",
            r"line 4: time 0.04 does not increase",
        ),
        ("time,arousal,valence\n0,0,0\n0.04,0\n", r"line 3: 2 fields"),
    ],
)
def test_label_csv_errors(tmp_path, text, message):
    with pytest.raises(LabelError, match=r"bad\.csv: " + message):
        read_label_csv(_write(tmp_path / "bad.csv", text))


def test_label_csv_missing_file(tmp_path):
    with pytest.raises(LabelError, match=r"gone\.csv: no such"):
        read_label_csv(tmp_path / "gone.csv")


TRACK = LabelTrack(np.array([0.0, 0.1, 0.2]), np.array([[0.0, 1.0], [1.0, -1.0], [3.0, 0.0]]))


def test_labels_end_alignment_by_hand():
    # Frame i takes the track at 0.04 (i + 1): 0.04 .. 0.24, the last held at the edge.
    expected = [[0.4, 0.2], [0.8, -0.6], [1.4, -0.8], [2.2, -0.4], [3.0, 0.0], [3.0, 0.0]]
    out = labels_for_frames(TRACK, 6)
    assert out.shape == (6, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(labels_for_frames(TRACK, 6, "end"), expected, atol=1e-6)


def test_labels_start_alignment_by_hand():
    # Frame i takes the track at 0.04 i: 0 .. 0.2.
    expected = [[0.0, 1.0], [0.4, 0.2], [0.8, -0.6], [1.4, -0.8], [2.2, -0.4], [3.0, 0.0]]
    np.testing.assert_allclose(labels_for_frames(TRACK, 6, "start"), expected, atol=1e-6)


def test_labels_on_the_40ms_grid_pick_rows_exactly_and_hold_before_start():
    times = np.arange(10) * 0.04
    values = np.stack([np.arange(10.0), -np.arange(10.0)], axis=1)
    track = LabelTrack(times, values)
    np.testing.assert_allclose(labels_for_frames(track, 9, "end"), values[1:10], atol=1e-6)
    np.testing.assert_allclose(labels_for_frames(track, 10, "start"), values, atol=1e-6)
    late = LabelTrack(times[3:], values[3:])  # the track starts at 0.12 s
    np.testing.assert_allclose(
        labels_for_frames(late, 3, "start")[:, 0], [3.0, 3.0, 3.0], atol=1e-6
    )


def test_unknown_alignment():
    with pytest.raises(ConfigError, match="label_alignment 'middle'"):
        labels_for_frames(TRACK, 3, "middle")

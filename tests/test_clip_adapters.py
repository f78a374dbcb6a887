"""The clip adapters: the AFEW folder scanner and the clips CSV reader, with every error they raise."""

from __future__ import annotations

from pathlib import Path

import pytest

from emorec.clips.source import EMOTIONS, ClipSource, check_clip_sources
from emorec.corpus.adapters.afew import afew_sources
from emorec.corpus.adapters.clips_csv import read_clips_csv
from emorec.errors import ConfigError, LabelError, MediaError


def touch(path: Path) -> Path:
    """An empty stand-in video: the scanners look at names, not contents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def afew_tree(root: Path) -> Path:
    for partition, names in (("Train_AFEW", ("000046280", "000100")), ("Val_AFEW", ("000046280",))):
        for emotion in ("Angry", "Happy"):
            for name in names:
                touch(root / partition / emotion / f"{name}{emotion[0]}.avi")
    touch(root / "Train_AFEW" / "Sad" / "000200.avi")
    touch(root / "Val_AFEW" / "Surprise" / "000300.avi")
    touch(root / "Test_AFEW" / "000400.avi")
    touch(root / "Train_AFEW" / "Sad" / "notes.txt")  # not a video: ignored
    touch(root / "Train_AFEW" / "Sad" / ".hidden.avi")  # hidden: ignored
    return root


def test_afew_layout_partitions_labels_and_ids(tmp_path):
    sources = afew_sources(afew_tree(tmp_path / "afew"))
    by_id = {s.clip_id: s for s in sources}
    assert [s.partition for s in sources] == ["train"] * 5 + ["dev"] * 3 + ["test"]
    # AFEW repeats names across Train and Val: the partition keeps the ids apart.
    assert by_id["train_000046280A"].video.parent.parent.name == "Train_AFEW"
    assert by_id["dev_000046280A"].video.parent.parent.name == "Val_AFEW"
    assert by_id["train_000046280H"].label == EMOTIONS.index("Happy") == 3
    assert by_id["train_000200"].label_name == "Sad" and by_id["train_000200"].label == 5
    assert by_id["dev_000300"].label == 6
    test = by_id["test_000400"]
    assert test.partition == "test" and test.label is None and test.label_name == ""
    assert all(s.classes == EMOTIONS and s.subject_id == "" for s in sources)


def test_afew_folder_names_are_case_insensitive_and_short_names_work(tmp_path):
    root = tmp_path / "afew"
    touch(root / "train" / "happy" / "a.avi")
    touch(root / "VAL" / "NEUTRAL" / "b.mp4")
    touch(root / "test" / "c.avi")
    sources = afew_sources(root)
    assert [(s.clip_id, s.partition, s.label) for s in sources] == [
        ("train_a", "train", 3), ("dev_b", "dev", 4), ("test_c", "test", None)
    ]


def test_afew_unknown_class_folder(tmp_path):
    root = afew_tree(tmp_path / "afew")
    touch(root / "Train_AFEW" / "Contempt" / "x.avi")
    with pytest.raises(ConfigError, match=r"Train_AFEW/Contempt: unknown class folder 'Contempt'"):
        afew_sources(root)


def test_afew_empty_class_folder(tmp_path):
    root = afew_tree(tmp_path / "afew")
    (root / "Val_AFEW" / "Fear").mkdir()
    touch(root / "Val_AFEW" / "Fear" / "readme.txt")
    with pytest.raises(MediaError, match=r"Val_AFEW/Fear: class folder holds no video clips"):
        afew_sources(root)


def test_afew_missing_partitions_and_ambiguous_folders(tmp_path):
    with pytest.raises(MediaError, match=r"nowhere: no such AFEW folder"):
        afew_sources(tmp_path / "nowhere")
    touch(tmp_path / "other" / "Test_AFEW" / "a.avi")
    with pytest.raises(MediaError, match=r"other: no Train_AFEW/ or Val_AFEW/ folder"):
        afew_sources(tmp_path / "other")
    root = afew_tree(tmp_path / "afew")
    touch(root / "Train" / "Happy" / "z.avi")
    with pytest.raises(ConfigError, match=r"afew: both Train/ and Train_AFEW/ hold the train partition"):
        afew_sources(root)


def test_afew_empty_test_folder_and_twice_listed_clip(tmp_path):
    root = afew_tree(tmp_path / "afew")
    for path in (root / "Test_AFEW").iterdir():
        path.unlink()
    with pytest.raises(MediaError, match=r"Test_AFEW: test folder holds no video clips"):
        afew_sources(root)
    (root / "Test_AFEW").rmdir()
    touch(root / "Train_AFEW" / "Happy" / "000200.avi")  # also in Sad
    with pytest.raises(ConfigError, match=r"clip id 'train_000200' is listed twice"):
        afew_sources(root)


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_clips_csv_classes_partitions_subjects(tmp_path):
    for name in ("a", "b", "c", "d"):
        touch(tmp_path / "media" / f"{name}.avi")
    csv_path = write_csv(tmp_path / "clips.csv", (
        "Clip,Partition,Subject,Video,Label,notes\n"
        "c1,train,s1,media/a.avi,joy,x\n"
        "c2,train,,media/b.avi,anger,\n"
        f"c3,dev,s2,{tmp_path / 'media' / 'c.avi'},calm,\n"
        "\n"
        "c4,test,s3,media/d.avi,,\n"
    ))
    sources = read_clips_csv(csv_path)
    assert [s.clip_id for s in sources] == ["c1", "c2", "c3", "c4"]
    assert sources[0].classes == ("anger", "calm", "joy")  # sorted names
    assert [s.label for s in sources] == [2, 0, 1, None]
    assert [s.subject_id for s in sources] == ["s1", "", "s2", "s3"]
    assert sources[1].video == (tmp_path / "media" / "b.avi").resolve()
    fixed = read_clips_csv(csv_path, classes=("joy", "anger", "calm", "fear"))
    assert [s.label for s in fixed] == [0, 1, 2, None] and fixed[0].classes[-1] == "fear"


def test_clips_csv_errors_name_the_file_and_line(tmp_path):
    touch(tmp_path / "a.avi")
    cases = [
        ("clip,partition,video,label\n", ConfigError, r"clips.csv: missing column\(s\) subject"),
        ("clip,partition,subject,video,label\nx,validation,,a.avi,joy\n", ConfigError,
         r"clips.csv: line 2: unknown partition 'validation' for clip x"),
        ("clip,partition,subject,video,label\nx,train,,missing.avi,joy\n", MediaError,
         r"missing.avi: no such video \(.*clips.csv: line 2, clip x\)"),
        ("clip,partition,subject,video,label\nx,dev,,a.avi,\n", LabelError,
         r"clips.csv: line 2: clip x in partition dev has no label"),
        ("clip,partition,subject,video,label\nx,train,,a.avi,joy\nx,dev,,a.avi,joy\n", ConfigError,
         r"clips.csv: clip id 'x' is listed twice"),
        ("clip,partition,subject,video,label\nbad id,train,,a.avi,joy\n", ConfigError,
         r"clips.csv: line 2: clip id 'bad id' must start with a letter or digit"),
        ("clip,partition,subject,video,label\nx,test,,a.avi,\n", LabelError, r"clips.csv: no labelled clip"),
    ]
    for text, error, message in cases:
        with pytest.raises(error, match=message):
            read_clips_csv(write_csv(tmp_path / "clips.csv", text))
    with pytest.raises(LabelError, match=r"line 2: clip x has label 'joy', not one of the classes sad"):
        read_clips_csv(write_csv(tmp_path / "clips.csv",
                                 "clip,partition,subject,video,label\nx,train,,a.avi,joy\n"), classes=("sad",))
    with pytest.raises(ConfigError, match=r"nope.csv: no such clips CSV"):
        read_clips_csv(tmp_path / "nope.csv")


def test_clip_sources_check_their_classes_and_partitions(tmp_path):
    with pytest.raises(ConfigError, match=r"clip a: unknown partition 'val'"):
        ClipSource("a", "val", tmp_path / "a.avi", EMOTIONS, 0)
    with pytest.raises(ConfigError, match=r"clip a: label 7 is not an index into 7 classes"):
        ClipSource("a", "train", tmp_path / "a.avi", EMOTIONS, 7)
    with pytest.raises(ConfigError, match=r"clip a: classes must be distinct, non-empty names"):
        ClipSource("a", "train", tmp_path / "a.avi", ("x", "x"), 0)
    one = ClipSource("a", "train", tmp_path / "a.avi", ("x", "y"), 1)
    other = ClipSource("b", "train", tmp_path / "b.avi", ("x", "z"), 1)
    with pytest.raises(ConfigError, match=r"corpus: clip b has classes \('x', 'z'\)"):
        check_clip_sources([one, other], "corpus")
    with pytest.raises(ConfigError, match=r"corpus: no clips found"):
        check_clip_sources([], "corpus")

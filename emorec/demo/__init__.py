"""The embedded demo corpus: synthetic subjects whose speech and drawn face follow their labels.

``write_demo_media(out_dir)`` writes real wav/mp4/csv files and a
``recordings.csv`` in the ``manifest`` adapter's format, so the demo goes
through the same build path as a user's own recordings.

``write_demo_clips(out_dir)`` (:mod:`emorec.demo.clips`) writes the clip
classification corpus: short AFEW-layout clips of seven expression classes.
"""

from emorec.demo.clips import ClipSpec, write_demo_clips
from emorec.demo.curves import EmotionCurve, random_curve
from emorec.demo.spec import DemoSpec, Look, Subject, Voice, make_subjects
from emorec.demo.writer import CSV_COLUMNS, LABEL_COLUMNS, RECORDINGS_CSV, write_demo_media

__all__ = [
    "CSV_COLUMNS",
    "ClipSpec",
    "DemoSpec",
    "EmotionCurve",
    "LABEL_COLUMNS",
    "Look",
    "RECORDINGS_CSV",
    "Subject",
    "Voice",
    "make_subjects",
    "random_curve",
    "write_demo_clips",
    "write_demo_media",
]

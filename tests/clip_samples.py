"""Small clip corpora for the clip build and pipeline tests, and a fast stand-in face detector.

``sample_clips(root)`` writes five short AVI clips made with the demo's
drawing and speech (two ordinary ones, one without a sound track, one
without a face, one of 10 frames) and returns their :class:`ClipSource`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emorec.clips.source import ClipSource
from emorec.demo.clips import ClipSpec, plan_clips, render_clip
from emorec.media.faces import LANDMARK_NAMES
from emorec.media.write import write_avi

CLASSES = ("Angry", "Happy", "Surprise")
SPEC = ClipSpec(classes=CLASSES, train_per_class=1, val_per_class=1, train_subjects=1, val_subjects=1,
                min_seconds=0.9, max_seconds=1.1)
AUDIO_RATE = SPEC.audio_rate


def sample_clips(root: Path) -> list[ClipSource]:
    """Write the sample clips under ``root`` and return them (train: 4 clips, dev: 1)."""
    root = Path(root)
    planned = {c.label + c.partition: c for c in plan_clips(SPEC, seed=5)}
    rendered = {key: render_clip(clip, SPEC, seed=5) for key, clip in planned.items()}
    sources = []

    def add(clip_id, partition, label, frames, audio):
        path = root / f"{clip_id}.avi"
        write_avi(path, frames, fps=SPEC.fps, audio=audio, audio_rate=AUDIO_RATE)
        sources.append(ClipSource(clip_id, partition, path, CLASSES, CLASSES.index(label), f"subj_{partition}"))

    frames, audio = rendered["Happytrain"]
    add("happy", "train", "Happy", frames, audio)
    frames, audio = rendered["Surprisetrain"]
    add("mute", "train", "Surprise", frames, None)
    frames, audio = rendered["Angrytrain"]
    add("short", "train", "Angry", frames[:10], audio[: int(10 / SPEC.fps * AUDIO_RATE)])
    # No face: a smooth colour ramp that drifts, with the Angry clip's voice.
    ramp = np.linspace(40, 200, SPEC.width)[None, :, None] * np.ones((SPEC.height, 1, 3))
    empty = [np.clip(ramp + 3 * k, 0, 255).astype(np.uint8) for k in range(len(frames))]
    add("faceless", "train", "Angry", empty, audio)
    frames, audio = rendered["Happydev"]
    add("devclip", "dev", "Happy", frames, audio)
    return sources


class CentreDetector:
    """Finds "a face" in the middle of any frame with detail there (a drawn face), none in smooth ones.

    A picklable, instant stand-in for MTCNN with its ``detect_faces(image)``
    interface: the box is the centred square of half the frame's height.
    """

    def detect_faces(self, image):
        height, width = image.shape[:2]
        side = height / 2
        x0, y0 = (width - side) / 2, (height - side) / 2
        centre = image[int(y0) : int(y0 + side), int(x0) : int(x0 + side)].astype(np.float64)
        if np.abs(np.diff(centre, axis=1)).mean() < 2.0:
            return []
        points = [(x0 + side * fx, y0 + side * fy) for fx, fy in
                  ((0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.35, 0.75), (0.65, 0.75))]
        return [{
            "box": [x0, y0, side, side],
            "confidence": 0.99,
            "keypoints": dict(zip(LANDMARK_NAMES, points)),
        }]

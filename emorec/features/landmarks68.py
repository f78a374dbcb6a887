"""68 facial landmarks per frame from dlib's shape predictor, started from emorec's face boxes.

**Licence of the model.** dlib (installed as the ``dlib-bin`` wheel: ``pip
install 'emorec[landmarks]'``) is Boost-licensed, but the model
``shape_predictor_68_face_landmarks.dat`` was trained on the iBUG 300-W data
set, whose licence excludes commercial use. The model, the landmarks it
gives and the ``video_geometric`` features computed from them are for
research only.

**Where the model comes from.** emorec never downloads it. Debian's
``libdlib-data`` package installs it as :data:`DEBIAN_MODEL`
(``apt-get install libdlib-data``); any other copy can be named by the
``model`` argument or the ``EMOREC_DLIB_SHAPE_PREDICTOR`` environment variable.

**Boxes.** The predictor needs a face box to place its mean shape in. dlib's
own HOG detector is not used: emorec already tracks the face with MTCNN
(:mod:`emorec.media.faces`), whose :class:`~emorec.media.faces.FaceTrack`
boxes are the MTCNN box made square with ``margin`` (0.2) of its side added
on every side. :func:`predictor_box` takes that margin off again. On
scikit-image's astronaut the 68 points predicted from the MTCNN box and from
dlib's own detector box differ by at most 2 pixels (0.5 on average) on a
90-pixel face.

**Coordinates.** In and out, emorec's continuous pixel coordinates (pixel
``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``); dlib's integer pixel indices
are converted (``+ 0.5``: a dlib point is a pixel's centre).

**Numbering** (0-based, the subject's right is the image's left): 0-16 jaw
line, 17-21 right brow, 22-26 left brow, 27-30 nose bridge, 31-35 nostrils,
36-41 right eye, 42-47 left eye, 48-59 outer lip, 60-67 inner lip.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError

log = logging.getLogger(__name__)

MODEL_ENV = "EMOREC_DLIB_SHAPE_PREDICTOR"
DEBIAN_MODEL = Path("/usr/share/dlib/shape_predictor_68_face_landmarks.dat")
NUM_POINTS = 68
DEFAULT_MARGIN = 0.2  # emorec.media.faces.FaceConfig.margin


def find_shape_predictor(model=None) -> Path:
    """The model file to use: ``model``, else ``$EMOREC_DLIB_SHAPE_PREDICTOR``, else Debian's copy.

    Args:
        model: a path, or None to look in the usual places.

    Returns:
        The path of an existing file.

    Raises:
        ConfigError: the file does not exist (naming it and where to get it).
    """
    chosen = model or os.environ.get(MODEL_ENV) or DEBIAN_MODEL
    path = Path(chosen)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no dlib shape predictor here; install Debian's libdlib-data "
            f"(apt-get install libdlib-data puts it in {DEBIAN_MODEL.parent}) or give the path "
            f"of shape_predictor_68_face_landmarks.dat (argument or ${MODEL_ENV}); "
            "emorec never downloads it"
        )
    return path


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise ConfigError(
            "dlib is not installed; pip install 'emorec[landmarks]' (the dlib-bin wheel)"
        ) from exc
    return dlib


def predictor_box(box, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The face box the predictor starts from: a FaceTrack box ``[x0, y0, x1, y1]`` without its margin.

    Args:
        box: ``(..., 4)`` square boxes with ``margin`` of their face's side added on every side.
        margin: the margin they were made with (FaceConfig.margin).

    Returns:
        ``(..., 4)`` float64 boxes with the same centre and side ``side / (1 + 2 margin)``.

    >>> predictor_box([0.0, 0.0, 140.0, 140.0], margin=0.2).tolist()
    [20.0, 20.0, 120.0, 120.0]
    """
    box = np.asarray(box, dtype=np.float64)
    centre = (box[..., :2] + box[..., 2:]) / 2
    half = (box[..., 2:] - box[..., :2]) / (2 * (1 + 2 * margin))
    return np.concatenate([centre - half, centre + half], axis=-1)


class LandmarkPredictor:
    """dlib's 68-point shape predictor, loaded once, applied to face boxes.

    Args:
        model: path of ``shape_predictor_68_face_landmarks.dat`` (None: see
            :func:`find_shape_predictor`).

    Raises:
        ConfigError: dlib missing, the file missing, not a dlib shape
            predictor, or a predictor of another number of points.
    """

    def __init__(self, model=None):
        self.path = find_shape_predictor(model)
        self._dlib = _import_dlib()
        try:
            self._predictor = self._dlib.shape_predictor(str(self.path))
        except RuntimeError as exc:
            raise ConfigError(f"{self.path}: not a dlib shape predictor ({exc})") from exc
        probe = self._predictor(np.zeros((16, 16), np.uint8), self._dlib.rectangle(0, 0, 15, 15))
        if probe.num_parts != NUM_POINTS:
            raise ConfigError(
                f"{self.path}: a {probe.num_parts}-point shape predictor; emorec needs the "
                f"{NUM_POINTS}-point one (shape_predictor_68_face_landmarks.dat)"
            )
        log.debug("loaded dlib shape predictor %s", self.path)

    def predict(self, image: np.ndarray, box) -> np.ndarray:
        """The 68 points ``(68, 2)`` float64 of the face in ``box`` ``[x0, y0, x1, y1]`` of ``image``.

        ``image`` is ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8; ``box`` is the
        face itself (see :func:`predictor_box`), in continuous pixel coordinates.
        """
        image = np.ascontiguousarray(image, dtype=np.uint8)
        x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in np.asarray(box, dtype=np.float64))
        rect = self._dlib.rectangle(x0, y0, max(x1 - 1, x0), max(y1 - 1, y0))
        shape = self._predictor(image, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        return points + 0.5

    def predict_track(
        self,
        frames: Iterable[np.ndarray],
        boxes: np.ndarray,
        found: np.ndarray,
        margin: float = DEFAULT_MARGIN,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks of every frame of a face track.

        Args:
            frames: the video's frames (RGB uint8), one per track entry.
            boxes: ``(N, 4)`` FaceTrack boxes (square, with ``margin``).
            found: ``(N,)`` FaceTrack flags; frames with 0, or with an empty
                or non-finite box, are not predicted.
            margin: the margin the boxes were made with.

        Returns:
            ``(landmarks (N, 68, 2) float32, found (N,) int8)``: zeros and 0
            where no face was predicted.

        Raises:
            ValueError: fewer frames than boxes.
        """
        boxes = np.asarray(boxes, dtype=np.float64)
        found = np.asarray(found).astype(bool)
        n = len(boxes)
        faces = predictor_box(boxes, margin) if n else boxes
        out = np.zeros((n, NUM_POINTS, 2), np.float32)
        ok = np.zeros(n, np.int8)
        count = 0
        for i, frame in enumerate(frames):
            if i >= n:
                break
            count += 1
            box = faces[i]
            if not found[i] or not np.all(np.isfinite(box)) or box[2] - box[0] < 1 or box[3] - box[1] < 1:
                continue
            out[i] = self.predict(frame, box)
            ok[i] = 1
        if count < n:
            raise ValueError(f"face track has {n} frames but the video gave {count}")
        return out, ok

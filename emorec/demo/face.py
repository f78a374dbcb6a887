"""A drawn face whose expression follows the labels: brows and eyes = arousal, mouth = valence.

The face sways and drifts slowly and each subject has its own skin, hair,
background and side lighting, so a model has to find the expression rather
than a fixed pixel. Everything is drawn with OpenCV in sub-pixel precision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import cv2
import numpy as np

from emorec.demo.curves import EmotionCurve
from emorec.demo.spec import DemoSpec, Look

_SHIFT = 4  # cv2 fixed-point bits: coordinates are drawn in 1/16 pixel
_ONE = 1 << _SHIFT
_BLUR_SIGMA = 1.2  # pixels
_MOUTH_X = np.linspace(-1.0, 1.0, 17)
_MOUTH_BOW = 1 - _MOUTH_X**2
_LID_COS = np.cos(np.linspace(0, np.pi, 9))
_LID_SIN = np.sin(np.linspace(0, np.pi, 9))
_NECK = [(-0.42, 0.8), (0.42, 0.8), (0.5, 1.7), (-0.5, 1.7)]
_SHOULDERS = [(-0.5, 1.55), (0.5, 1.55), (1.9, 2.1), (2.2, 4.0), (-2.2, 4.0), (-1.9, 2.1)]
_NOSE = [(0.0, -0.05), (0.07, 0.26), (-0.05, 0.29)]


@dataclasses.dataclass(frozen=True)
class Expression:
    """Per-frame face state: arousal-driven eyes and brows, valence-driven mouth, speech."""

    eye_open: float  # 0 = shut, 1 = wide open (up to ~1.5 for a startled stare)
    brow_raise: float  # -1 (low, frowning) .. 1 (raised)
    smile: float  # -1 (frown) .. 1 (smile)
    mouth_open: float  # 0 .. 1, from the speech envelope
    # Used by the clip demo's categorical expressions; at 0 (the default) the
    # drawing is exactly the regression demo's.
    brow_inner: float = 0.0  # inner brow ends: > 0 raised (sorrow, fear), < 0 pulled down (anger)
    mouth_width: float = 0.0  # -1 (pressed, narrow) .. 1 (stretched sideways)
    sneer: float = 0.0  # upper lip raised on the image's left (< 0) or right (> 0) side, nose wrinkled


@dataclasses.dataclass(frozen=True)
class Pose:
    """Where the head is: centre in pixels, head half-width in pixels, roll in degrees."""

    cx: float
    cy: float
    radius: float
    roll: float


def expression_for(arousal: float, valence: float, mouth_open: float) -> Expression:
    """Map label values to the face: a fixed, instantaneous map shared by all subjects.

    Args:
        arousal: the arousal label, nominally in ``[-1, 1]``; opens the eyes
            (``0.7 + 0.3 * arousal``) and raises the brows.
        valence: the valence label, nominally in ``[-1, 1]``; the smile (negative: frown).
        mouth_open: the speech envelope of the frame, clipped to ``[0, 1]``.

    Returns:
        The :class:`Expression` (the clip demo's extra fields at 0).

    >>> e = expression_for(1.0, -0.5, 2.0)
    >>> e.eye_open, e.brow_raise, e.smile, e.mouth_open
    (1.0, 1.0, -0.5, 1.0)
    """
    return Expression(
        eye_open=float(0.7 + 0.3 * arousal),
        brow_raise=float(arousal),
        smile=float(valence),
        mouth_open=float(np.clip(mouth_open, 0.0, 1.0)),
    )


class _Transform:
    """Maps face units (head half-width = 1, y down) to fixed-point frame pixels."""

    def __init__(self, pose: Pose):
        theta = np.deg2rad(pose.roll)
        self.pose = pose
        self.matrix = pose.radius * np.array(
            [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
        )

    def points(self, uv) -> np.ndarray:
        xy = np.asarray(uv, dtype=np.float64).reshape(-1, 2) @ self.matrix.T
        xy += (self.pose.cx, self.pose.cy)
        return np.round(xy * _ONE).astype(np.int32)

    def point(self, u: float, v: float) -> tuple[int, int]:
        x, y = self.points([(u, v)])[0]
        return int(x), int(y)

    def axes(self, a: float, b: float) -> tuple[int, int]:
        return int(round(a * self.pose.radius * _ONE)), int(round(b * self.pose.radius * _ONE))

    def width(self, w: float) -> int:
        return max(1, int(round(w * self.pose.radius)))


def _ellipse(img, tf: _Transform, centre, axes, colour, thickness=-1, angle=0.0):
    cv2.ellipse(img, tf.point(*centre), tf.axes(*axes), tf.pose.roll + angle, 0, 360, colour,
                thickness, cv2.LINE_AA, _SHIFT)


def _polyline(img, tf: _Transform, uv, colour, width: float, closed=False):
    cv2.polylines(img, [tf.points(uv)], closed, colour, tf.width(width), cv2.LINE_AA, _SHIFT)


def _shade(colour, factor: float) -> tuple[float, float, float]:
    return tuple(float(np.clip(c * factor, 0, 255)) for c in colour)


@dataclasses.dataclass(frozen=True)
class Palette:
    """The colours of one subject's face, computed once per recording."""

    skin: tuple
    rim: tuple
    socket: tuple
    mid: tuple
    nostrils: tuple
    hair: tuple
    neck: tuple
    ears: tuple
    shirt: tuple
    lid: tuple
    brows: tuple
    nose: tuple
    lips: tuple
    mouth: tuple = (95, 25, 35)
    eye_white: tuple = (245, 245, 240)
    pupil: tuple = (35, 25, 20)


def palette_for(look: Look) -> Palette:
    """Derive every drawing colour from the subject's skin, hair and background.

    Args:
        look: the subject's look (RGB colours in 0..255).

    Returns:
        The :class:`Palette` (shades of the skin, hair and lower background; fixed mouth, eye
        white and pupil colours).
    """
    lips = _shade(look.skin, 0.55)
    return Palette(
        skin=look.skin,
        rim=_shade(look.skin, 0.7),
        socket=_shade(look.skin, 0.72),
        mid=_shade(look.skin, 0.85),
        nostrils=_shade(look.skin, 0.45),
        hair=look.hair,
        neck=_shade(look.skin, 0.85),
        ears=_shade(look.skin, 0.9),
        shirt=_shade(look.background_bottom, 0.55),
        lid=_shade(look.skin, 0.5),
        brows=_shade(look.hair, 0.8),
        nose=_shade(look.skin, 0.6),
        lips=(min(255.0, lips[0] + 60), lips[1], lips[2]),
    )


def draw_face(img: np.ndarray, pose: Pose, expr: Expression, colours: Palette) -> None:
    """Draw the head, hair, ears, eyes, brows, nose and mouth onto ``img`` (RGB, in place).

    Args:
        img: the ``(H, W, 3)`` uint8 RGB frame to draw on (modified).
        pose: where the head is (centre and half-width in pixels, roll in degrees).
        expr: the face state of the frame.
        colours: the subject's palette.
    """
    tf = _Transform(pose)
    # Neck and shoulders, then hair behind the head, then the head itself.
    cv2.fillPoly(img, [tf.points(_NECK)], colours.neck, cv2.LINE_AA, _SHIFT)
    cv2.fillPoly(img, [tf.points(_SHOULDERS)], colours.shirt, cv2.LINE_AA, _SHIFT)
    _ellipse(img, tf, (0.0, -0.28), (1.1, 1.12), colours.hair)
    for side in (-1, 1):
        _ellipse(img, tf, (side * 0.98, 0.05), (0.13, 0.24), colours.ears)
    # Shading darker towards the rim: flat cartoon faces score too low in
    # MTCNN's last stage, a rounded-looking head passes reliably.
    _ellipse(img, tf, (0.0, 0.0), (1.0, 1.3), colours.rim)
    _ellipse(img, tf, (0.0, 0.05), (0.85, 1.15), colours.mid)
    _ellipse(img, tf, (0.0, 0.05), (0.65, 0.95), colours.skin)

    eye_h = 0.025 + 0.11 * expr.eye_open
    for side in (-1, 1):
        ex, ey = side * 0.38, -0.12
        _ellipse(img, tf, (ex, ey - 0.02), (0.26, 0.17), colours.socket)
        _ellipse(img, tf, (ex, ey), (0.19, eye_h), colours.eye_white)
        pupil = min(0.075, eye_h)
        cv2.circle(img, tf.point(ex, ey), int(round(pupil * pose.radius * _ONE)), colours.pupil, -1,
                   cv2.LINE_AA, _SHIFT)
        # Upper lid line, so a nearly shut eye still reads as an eye.
        lid = np.stack([ex + 0.2 * _LID_COS, ey - eye_h * _LID_SIN], 1)
        _polyline(img, tf, lid, colours.lid, 0.035)
        by = -0.40 - 0.14 * expr.brow_raise
        inner = by + 0.03
        if expr.brow_inner:
            inner -= 0.12 * expr.brow_inner
        _polyline(img, tf, [(side * 0.16, inner), (side * 0.36, by - 0.03), (side * 0.58, by + 0.04)],
                  colours.brows, 0.08)

    _polyline(img, tf, _NOSE, colours.nose, 0.045)
    for side in (-1, 1):
        _ellipse(img, tf, (side * 0.08, 0.28), (0.05, 0.03), colours.nostrils)
    if expr.sneer:
        # Wrinkles across the bridge of the nose on the sneering side.
        side = float(np.sign(expr.sneer))
        for k in range(2):
            y = 0.02 + 0.07 * k
            _polyline(img, tf, [(side * 0.04, y + 0.02), (side * 0.2, y - 0.03)], colours.nose,
                      0.03 * min(1.0, abs(expr.sneer)) + 0.01)

    # Mouth: both lips are parabolas through the corners; the corners rise with
    # valence (smile) and drop below the centre for a frown.
    half = 0.32 + 0.04 * expr.smile
    if expr.mouth_width:
        half *= 1 + 0.3 * expr.mouth_width
    centre_y = 0.6
    corner_y = centre_y - 0.17 * expr.smile
    x = half * _MOUTH_X
    upper = centre_y + (corner_y - centre_y) * (1 - _MOUTH_BOW)
    lower = upper + 0.02 + 0.22 * expr.mouth_open * _MOUTH_BOW
    if expr.sneer:
        # One side of the upper lip lifts, baring the mouth on that side only.
        lift = np.clip(np.sign(expr.sneer) * _MOUTH_X, 0.0, 1.0) * np.sin(np.pi * np.abs(_MOUTH_X)) ** 0.5
        upper = upper - 0.14 * abs(expr.sneer) * lift
    outline = np.concatenate([np.stack([x, upper], 1), np.stack([x, lower], 1)[::-1]])
    cv2.fillPoly(img, [tf.points(outline)], colours.mouth, cv2.LINE_AA, _SHIFT)
    _polyline(img, tf, np.stack([x, upper], 1), colours.lips, 0.06)
    _polyline(img, tf, np.stack([x, lower], 1), colours.lips, 0.06)


def backdrop(width: int, height: int, look: Look, side: float) -> tuple[np.ndarray, np.ndarray]:
    """A vertical colour gradient ``(H, W, 3)`` uint8 and a side-light gain map for the subject.

    Args:
        width: frame width ``W`` in pixels.
        height: frame height ``H`` in pixels.
        look: the subject's look (background colours at top and bottom, overall light).
        side: side-light direction in ``[-1, 1]``: > 0 brighter on the right, up to +-17.5 %
            at the edges.

    Returns:
        ``(background, gain)``: the ``(H, W, 3)`` uint8 gradient and the ``(1, W, 1)`` float32
        brightness factors (``look.light`` times the side light).

    >>> from emorec.demo.spec import Look
    >>> look = Look((200, 150, 120), (40, 30, 20), (100, 100, 100), (50, 50, 50), 0.25, 1.0)
    >>> background, gain = backdrop(8, 6, look, 0.5)
    >>> background.shape, background[0, 0].tolist(), background[-1, 0].tolist(), gain.shape
    ((6, 8, 3), [100, 100, 100], [50, 50, 50], (1, 8, 1))
    """
    ramp = np.linspace(0, 1, height)[:, None, None]
    top, bottom = np.array(look.background_top), np.array(look.background_bottom)
    background = np.broadcast_to(top + (bottom - top) * ramp, (height, width, 3))
    x = np.linspace(-0.5, 0.5, width)[None, :, None]
    gain = look.light * (1 + 0.35 * side * x)
    return np.ascontiguousarray(background.astype(np.uint8)), gain.astype(np.float32)


def _background(spec: DemoSpec, look: Look, side: float) -> tuple[np.ndarray, np.ndarray]:
    """The backdrop at the corpus's frame size."""
    return backdrop(spec.width, spec.height, look, side)


def finish_frame(img: np.ndarray, gain: np.ndarray, flicker: float) -> np.ndarray:
    """Soften a drawn frame like a webcam's and apply the side light and flicker; uint8 RGB.

    Args:
        img: the ``(H, W, 3)`` uint8 drawn frame.
        gain: per-pixel brightness factors broadcastable to ``img`` (from :func:`backdrop`).
        flicker: the frame's overall brightness factor (about 1).

    Returns:
        The Gaussian-blurred (sigma 1.2 px), lit ``(H, W, 3)`` uint8 frame.
    """
    # A slightly soft image, like a webcam's: hard cartoon edges lower MTCNN's scores.
    img = cv2.GaussianBlur(img, (0, 0), _BLUR_SIGMA)
    return np.clip(img * (gain * np.float32(flicker)), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Motion:
    """Slow head sway: sums of two sinusoids per degree of freedom."""

    amplitudes: np.ndarray  # (4, 2): x, y (fraction of the frame), roll (deg), scale
    frequencies: np.ndarray  # (4, 2) Hz
    phases: np.ndarray  # (4, 2)
    side_light: float
    flicker_phase: float

    def at(self, times) -> np.ndarray:
        """Return ``(len(times), 4)``: x, y offsets (fraction of the frame), roll (deg), scale.

        Args:
            times: times in seconds, any shape (flattened).

        Returns:
            The ``(N, 4)`` float64 head motion: x and y offsets of the centre as fractions of the
            frame width and height, roll in degrees, and relative head-size change.
        """
        t = np.asarray(times, dtype=np.float64).reshape(-1, 1, 1)
        return (self.amplitudes * np.sin(2 * np.pi * self.frequencies * t + self.phases)).sum(axis=-1)


def random_motion(rng: np.random.Generator) -> Motion:
    """Draw a subject's head motion and lighting direction.

    Args:
        rng: the random generator to draw from (advanced).

    Returns:
        The :class:`Motion`: two sinusoids per degree of freedom with periods of 5 to 20 s,
        a side light in ``[-1, 1)`` and a flicker phase.
    """
    scale = np.array([0.06, 0.04, 4.0, 0.05])[:, None]
    return Motion(
        amplitudes=scale * rng.uniform(0.3, 0.7, size=(4, 2)),
        frequencies=1.0 / rng.uniform(5.0, 20.0, size=(4, 2)),
        phases=rng.uniform(0, 2 * np.pi, size=(4, 2)),
        side_light=float(rng.uniform(-1, 1)),
        flicker_phase=float(rng.uniform(0, 2 * np.pi)),
    )


def iter_face_frames(
    curve: EmotionCurve, look: Look, motion: Motion, mouth_open: np.ndarray, spec: DemoSpec
) -> Iterator[np.ndarray]:
    """Yield the recording's RGB uint8 frames one by one (frame i shows time i / fps).

    Args:
        curve: the subject's arousal and valence over time.
        look: the subject's colours, head size and lighting.
        motion: the subject's head sway and side light.
        mouth_open: per-frame mouth opening in ``[0, 1]`` (from the speech); frames past its
            end reuse its last value.
        spec: the corpus settings (frame size, fps, frames per recording).

    Yields:
        ``spec.num_frames`` frames, each ``(spec.height, spec.width, 3)`` uint8 RGB.
    """
    background, gain = _background(spec, look, motion.side_light)
    colours = palette_for(look)
    times = np.arange(spec.num_frames) / spec.fps
    emotion = curve(times)
    poses = motion.at(times)
    flicker = 1 + 0.05 * np.sin(2 * np.pi * 0.13 * times + motion.flicker_phase)
    for i in range(len(times)):
        dx, dy, roll, scale = poses[i]
        pose = Pose(
            cx=spec.width * (0.5 + dx),
            cy=spec.height * (0.5 + dy),
            radius=spec.height * look.head_scale * (1 + scale),
            roll=roll,
        )
        expr = expression_for(emotion[i, 0], emotion[i, 1], mouth_open[min(i, len(mouth_open) - 1)])
        img = background.copy()
        draw_face(img, pose, expr, colours)
        yield finish_frame(img, gain, flicker[i])

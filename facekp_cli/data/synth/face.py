"""Geometry of one synthetic face: curves drawn around 14 labels sampled from a shape model.

The generator samples a 14-point shape from the point distribution model (synth_shape.py), reads the
head's centre, size and a yaw-like turn from it (`face_frame`), and `build_face` grows the drawable
curves around those points in a face frame (x right as seen in the image, y down, the head's
half-width is 1). Every label is one of the exact points that is drawn (the end of a brow curve, an
eye corner, the iris centre, a lip corner...), and `FacePose.project` maps curves and labels alike to
pixels (roll, scale, translation; its yaw and pitch stay 0 for these faces, whose turn is already in
the sampled shape), so labels are exact to sub-pixel precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEPTH = 0.9  # face depth relative to its half-width (an ellipsoid 1 x b x DEPTH)


def surface_depth(x: np.ndarray, y: np.ndarray, b: float) -> np.ndarray:
    return DEPTH * np.sqrt(np.clip(1.0 - x**2 - (y / b) ** 2, 0.0, None))


@dataclass(frozen=True)
class FacePose:
    yaw: float  # radians; positive turns the face features toward the image's right
    pitch: float
    roll: float
    scale: float  # pixels per face unit
    cx: float  # image position of the face centre, in pixels (corner-origin convention)
    cy: float

    def project(self, xyz: np.ndarray) -> np.ndarray:
        """(..., 3) face-frame points -> (..., 2) image pixels."""
        x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
        cy_, sy_ = np.cos(self.yaw), np.sin(self.yaw)
        xr = x * cy_ + z * sy_
        zr = -x * sy_ + z * cy_
        cp, sp = np.cos(self.pitch), np.sin(self.pitch)
        yr = y * cp - zr * sp
        cr, sr = np.cos(self.roll), np.sin(self.roll)
        u = (xr * cr - yr * sr) * self.scale + self.cx
        v = (xr * sr + yr * cr) * self.scale + self.cy
        return np.stack([u, v], axis=-1)


@dataclass(frozen=True)
class Face:
    """Face-frame curves (each an (M, 3) array with depth) and the 14 labelled points (14, 3)."""

    b: float  # face half-height
    outline: np.ndarray
    brows: tuple[np.ndarray, np.ndarray]  # closed polygons (left, right)
    brow_lines: tuple[np.ndarray, np.ndarray]  # centre lines, inner -> outer (hair strokes grow along them)
    eyes: tuple[np.ndarray, np.ndarray]  # closed eye-opening polygons
    irises: tuple[np.ndarray, np.ndarray]  # iris circles
    iris_radius: float
    lids: tuple[np.ndarray, np.ndarray]  # upper-lid curves
    nose: np.ndarray  # nose bridge-to-tip side line
    nostrils: tuple[np.ndarray, np.ndarray]
    lips: np.ndarray  # outer lip contour
    mouth_gap: np.ndarray  # opening of an open mouth, or the lip line of a closed one (open=False)
    mouth_open: bool
    ears: tuple[np.ndarray, np.ndarray]
    labels: np.ndarray  # (14, 3), docs/DESIGN.md order
    yaw: float  # radians, read from the shape's asymmetry: which side is shaded, where the nose line goes


def _with_depth(xy: np.ndarray, b: float, lift: float = 0.0) -> np.ndarray:
    z = surface_depth(xy[:, 0], xy[:, 1], b) + lift
    return np.column_stack([xy, z])


def bezier(p0, p1, p2, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)])


def _eye(rng, outer: np.ndarray, inner: np.ndarray, pupil: np.ndarray, openness: float, b: float):
    """One eye through its two labelled corners, the iris centred on the labelled pupil.

    Returns (polygon, upper-lid line, iris circle, iris radius); the polygon starts at the outer corner,
    runs along the upper lid to the inner corner, then back along the lower lid.
    """
    span = inner - outer
    half_w = max(float(np.linalg.norm(span)) / 2, 1e-3)
    direction = -span / (2 * half_w)  # inner -> outer
    centre = (outer + inner) / 2
    normal = np.array([direction[1], -direction[0]])
    if normal[1] > 0:  # points up (negative y) for both eyes
        normal = -normal
    t = np.linspace(0.0, 1.0, 24)[:, None]
    base = outer + t * (inner - outer)
    peak = rng.uniform(0.35, 0.65)  # where along the eye the lid is highest
    shape = np.sin(np.pi * t ** (np.log(0.5) / np.log(peak)))
    iris_r = half_w * rng.uniform(0.45, 0.6)
    # Open the lids at least far enough to show the pupil where it is labelled.
    lift = float(np.dot(pupil - centre, normal))
    up_h = max(half_w * openness * rng.uniform(0.9, 1.2), lift + iris_r * 0.45)
    low_h = max(half_w * openness * rng.uniform(0.5, 0.8), -lift + iris_r * 0.35)
    upper = base + normal * (up_h * shape)
    lower = base - normal * (low_h * shape)
    polygon = np.vstack([upper, lower[::-1][1:-1]])
    return (
        _with_depth(polygon, b),
        _with_depth(upper + normal * half_w * 0.08, b),
        _with_depth(_ellipse(pupil[0], pupil[1], iris_r, iris_r, 28), b),
        iris_r,
    )


def _brow(rng, inner: np.ndarray, outer: np.ndarray, arch: float, thick: float, b: float):
    """A brow from its labelled inner end to its outer end; returns (polygon, centre line)."""
    side = 1.0 if outer[0] > inner[0] else -1.0
    mid = (inner + outer) / 2 + np.array([side * 0.05, -arch])
    centre_line = bezier(inner, mid, outer, 20)
    # Thick at the inner end, tapering outward; the curve's two ends are the labels.
    taper = np.linspace(1.0, 0.35, 20)[:, None] * thick
    top = centre_line - np.array([0.0, 1.0]) * taper * 0.45
    bottom = centre_line + np.array([0.0, 1.0]) * taper * 0.55
    # Annotators put the inner end a little inside the first sparse hairs (measured on the real
    # training faces: a generator whose brow ended at the label put predictions ~0.035 units inward).
    reach = (inner - outer) / max(float(np.linalg.norm(inner - outer)), 1e-6) * rng.uniform(0.0, 0.07)
    start = inner + reach
    polygon = np.vstack([start, top[1:-1], outer, bottom[::-1][1:-1]])
    return _with_depth(polygon, b, 0.02), _with_depth(centre_line, b, 0.02)


def _mouth(rng, left: np.ndarray, centre: np.ndarray, right: np.ndarray, b: float):
    """Lips through the labelled corners; the gap's midpoint is the labelled centre.

    Returns (lips outline, gap curve, open?). A quadratic Bezier passes 0.25 p0 + 0.5 p1 + 0.25 p2 at
    t = 0.5, so the control point 2 * centre - (p0 + p2) / 2 puts the midline's middle on the label.
    """
    control = 2 * centre - (left + right) / 2
    width = float(np.linalg.norm(right - left))
    opening = width * rng.uniform(0.06, 0.3) if rng.random() < 0.4 else 0.0
    up = np.array([0.0, 1.0])
    upper_gap = bezier(left, control - up * opening, right, 25)
    lower_gap = bezier(left, control + up * opening, right, 25)
    t_up, t_low = width * rng.uniform(0.06, 0.14), width * rng.uniform(0.1, 0.2)
    upper_lip = bezier(left, control - up * (opening + 2 * t_up), right, 25)
    lower_lip = bezier(left, control + up * (opening + 2 * t_low), right, 25)
    lips = np.vstack([upper_lip, lower_lip[::-1][1:-1]])
    gap = np.vstack([upper_gap, lower_gap[::-1][1:-1]]) if opening else (upper_gap + lower_gap) / 2
    return _with_depth(lips, b, 0.03), _with_depth(gap, b, 0.03), bool(opening)


# Face proportions in units of the head's half-width (anthropometric averages): the outer eye corners
# are 1.28 apart, the eyes sit 0.7 in front of the head's vertical axis and the nose tip 1.2.
EYE_SPAN = 1.28
EYE_DEPTH, NOSE_DEPTH = 0.7, 1.2
TURNED_YAW = 0.45  # radians: from here on a face counts as turned (its nose shows in profile)
NOSTRIL_DEPTH = 0.85  # the nostrils' depth: between the eyes' and the tip's


def face_frame(shape: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Where a 14-point shape (any upright frame) puts the head: (head centre, head half-width, yaw).

    The yaw is read from the nose tip's offset off the eyes' midline: turning the head by yaw moves the
    nose tip NOSE_DEPTH * sin(yaw) sideways and the eyes only EYE_DEPTH * sin(yaw).
    """
    left, right, nose = shape[4], shape[9], shape[10]
    span = max(float(np.linalg.norm(right - left)), 1e-6)
    offset = float(nose[0] - (left[0] + right[0]) / 2)
    yaw = float(np.arcsin(np.clip(offset / span * EYE_SPAN / (NOSE_DEPTH - EYE_DEPTH), -0.8, 0.8)))
    half_width = span / (EYE_SPAN * max(np.cos(yaw), 0.6))
    eye_level = float(shape[[4, 6, 7, 9], 1].mean())
    centre = np.array([(left[0] + right[0]) / 2 - EYE_DEPTH * np.sin(yaw) * half_width, eye_level])
    return centre, half_width, yaw


def nostril_lag(yaw: float) -> float:
    """How far (face units, along x) the nostrils and the nose's base sit from the tip at this yaw."""
    return -(NOSE_DEPTH - NOSTRIL_DEPTH) * float(np.sin(yaw))


def turned_share(yaw: float) -> float:
    """0 for a frontal face, rising to 1 at TURNED_YAW and beyond: how much its nose shows in profile."""
    return min(abs(yaw) / TURNED_YAW, 1.0)


def build_face(rng: np.random.Generator, labels2d: np.ndarray, yaw: float) -> Face:
    """Draw-ready curves around 14 labels given in the face frame (head centre 0, half-width 1).

    Every label is a point of a drawn curve (a brow end, an eye corner, the iris centre, a lip corner,
    the gap's middle), so the labels are exact by construction.
    """
    mouth_y = float(labels2d[11:, 1].mean())
    b = max(mouth_y + rng.uniform(0.55, 0.75), 1.1)
    openness = rng.uniform(0.25, 0.65) if rng.random() > 0.1 else rng.uniform(0.05, 0.2)
    eyes, lids, irises, radii = [], [], [], []
    for outer, pupil, inner in ((4, 5, 6), (9, 8, 7)):
        polygon, lid, iris, iris_r = _eye(rng, labels2d[outer], labels2d[inner], labels2d[pupil], openness, b)
        eyes.append(polygon)
        lids.append(lid)
        irises.append(iris)
        radii.append(iris_r)
    thick = rng.uniform(0.05, 0.12)
    arch = rng.uniform(0.0, 0.12)
    brows, brow_lines = [], []
    for outer, inner in ((0, 1), (3, 2)):
        polygon, line = _brow(rng, labels2d[inner], labels2d[outer], arch, thick, b)
        brows.append(polygon)
        brow_lines.append(line)

    tip = labels2d[10]
    nose_w = rng.uniform(0.1, 0.17)
    eye_y = float(labels2d[[4, 9], 1].mean())
    root = np.array([(labels2d[6, 0] + labels2d[7, 0]) / 2 + 0.06, eye_y + 0.08])
    # A turned nose shows its profile: the side line then ends at the tip itself, not beside it.
    turned = turned_share(yaw)
    end = tip + np.array([nose_w * (1.0 - turned), -0.02])
    nose_side = bezier(root, [root[0] + 0.03, (eye_y + tip[1]) / 2], end, 12)
    nose_line = _with_depth(nose_side, b, 0.1)
    # The labelled tip is the front of the nose; the nostrils sit clearly below it (a generator with
    # them 0.03 below put predictions on real faces ~0.03 units too low).
    drop = rng.uniform(0.04, 0.09)
    # The nostrils sit nearer the face than the tip, so a turned head moves them less: they lag behind
    # the tip toward the face's middle, and the far one hides behind the tip (a generator with them
    # centred under the tip at every yaw read real faces' nose offsets at 0.4 of their size).
    lag = nostril_lag(yaw)
    far = np.sign(yaw)
    # The far nostril narrows as the head turns (hidden behind the tip in profile).
    narrowed = max(0.15, 1.0 - 1.5 * abs(np.sin(yaw)))
    widths = {s: nose_w * 0.25 * (narrowed if s == far else 1.0) for s in (-1, 1)}
    nostrils = tuple(
        _with_depth(_ellipse(tip[0] + lag + s * nose_w * 0.55, tip[1] + drop, widths[s], 0.035, 16), b, 0.2)
        for s in (-1, 1)
    )
    lips, gap, is_open = _mouth(rng, labels2d[11], labels2d[12], labels2d[13], b)

    theta = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
    jaw = rng.uniform(0.0, 0.25)  # a narrower chin
    ox = np.cos(theta) * (1 - jaw * np.clip(np.sin(theta), 0, None) ** 2)
    outline = np.column_stack([ox, b * np.sin(theta), np.zeros_like(theta)])
    ears = tuple(
        np.column_stack([_ellipse(s * 0.98, eye_y + 0.2, 0.13, 0.26, 20), np.full(20, -0.1)]) for s in (-1, 1)
    )
    return Face(
        b=b,
        outline=outline,
        brows=(brows[0], brows[1]),
        brow_lines=(brow_lines[0], brow_lines[1]),
        eyes=(eyes[0], eyes[1]),
        irises=(irises[0], irises[1]),
        iris_radius=float(np.mean(radii)),
        lids=(lids[0], lids[1]),
        nose=nose_line,
        nostrils=nostrils,
        lips=lips,
        mouth_gap=gap,
        mouth_open=is_open,
        ears=ears,
        labels=_with_depth(labels2d, b),
        yaw=yaw,
    )


def silhouette_width(yaw: float) -> float:
    """Half-width of the face outline seen at `yaw` (the ellipsoid's silhouette)."""
    return float(np.sqrt(np.cos(yaw) ** 2 + (DEPTH * np.sin(yaw)) ** 2))

"""Geometry of one synthetic face: random proportions and expression, a 3-D-ish pose, exact labels.

Faces are built in a face frame (x right as seen in the image, y down, the face half-width is 1)
where each feature is a curve sampled as points with a depth. `FacePose.project` maps those
points to image pixels: a yaw about the vertical axis (features slide sideways and one side
foreshortens), a small pitch, then scale, roll and translation. Every label is one of the
exact points that is drawn (the end of a brow curve, an eye corner, the iris centre...), passed
through the same projection, so labels are exact to sub-pixel precision.
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
    labels: np.ndarray  # (14, 3), DESIGN.md order


def _with_depth(xy: np.ndarray, b: float, lift: float = 0.0) -> np.ndarray:
    z = surface_depth(xy[:, 0], xy[:, 1], b) + lift
    return np.column_stack([xy, z])


def _bezier(p0, p1, p2, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)])


def _eye(rng, side: int, eye_y: float, eye_dx: float, half_w: float, openness: float, tilt: float, b: float):
    """One eye; side -1 = image-left. Returns (polygon, upper lid, iris circle, corners, iris centre)."""
    centre = np.array([side * eye_dx, eye_y])
    # Outer corner at side*(dx+w); a positive tilt raises the outer corner on both eyes.
    direction = np.array([side * np.cos(tilt), -np.sin(tilt)])
    outer = centre + direction * half_w
    inner = centre - direction * half_w
    normal = np.array([direction[1], -direction[0]]) * side  # points up (negative y) for both sides
    if normal[1] > 0:
        normal = -normal
    t = np.linspace(0.0, 1.0, 24)[:, None]
    base = outer + t * (inner - outer)
    peak = rng.uniform(0.35, 0.65)  # where along the eye the lid is highest
    shape = np.sin(np.pi * t ** (np.log(0.5) / np.log(peak)))
    up_h = half_w * openness * rng.uniform(0.9, 1.2)
    low_h = half_w * openness * rng.uniform(0.5, 0.8)
    upper = base + normal * (up_h * shape)
    lower = base - normal * (low_h * shape)
    polygon = np.vstack([upper, lower[::-1][1:-1]])
    iris_r = half_w * rng.uniform(0.42, 0.55)
    gaze = rng.uniform(-1.0, 1.0, size=2)
    iris_c = centre + direction * gaze[0] * (half_w - iris_r) * 0.75 - normal * gaze[1] * low_h * 0.4
    return (
        _with_depth(polygon, b),
        _with_depth(upper + normal * half_w * 0.08, b),
        _with_depth(_ellipse(iris_c[0], iris_c[1], iris_r, iris_r, 28), b),
        (outer, inner),
        iris_c,
        iris_r,
    )


def _brow(
    rng, side: int, inner_x: float, outer_x: float, y: float, drop: float, arch: float, thick: float, b
):
    inner = np.array([side * inner_x, y])
    outer = np.array([side * outer_x, y + drop])
    mid = (inner + outer) / 2 + np.array([side * 0.05, -arch])
    centre_line = _bezier(inner, mid, outer, 20)
    # Thick at the inner end, tapering outward; the curve's two ends are the labels.
    taper = np.linspace(1.0, 0.35, 20)[:, None] * thick
    top = centre_line - np.array([0.0, 1.0]) * taper * 0.6
    bottom = centre_line + np.array([0.0, 1.0]) * taper * 0.4
    polygon = np.vstack([inner, top[1:-1], outer, bottom[::-1][1:-1]])
    return _with_depth(polygon, b, 0.02), outer, inner


def _mouth(rng, y: float, half_w: float, b: float):
    """Returns (lips outline, gap curve, open?, left corner, centre, right corner)."""
    kind = rng.choice(["closed", "smile", "open", "smirk"], p=[0.35, 0.3, 0.25, 0.1])
    lift = {
        "closed": rng.uniform(-0.03, 0.04),
        "smile": rng.uniform(0.06, 0.16),
        "open": rng.uniform(-0.02, 0.1),
    }
    lift_l = lift.get(kind, rng.uniform(0.0, 0.04))
    lift_r = lift_l if kind != "smirk" else rng.uniform(0.08, 0.18)
    left = np.array([-half_w, y - lift_l])
    right = np.array([half_w, y - lift_r])
    mid_y = (left[1] + right[1]) / 2
    sag = {"smile": rng.uniform(0.04, 0.1)}.get(kind, rng.uniform(-0.02, 0.03))
    opening = rng.uniform(0.08, 0.3) if kind == "open" else 0.0
    upper_gap = _bezier(left, [0.0, mid_y + sag - opening], right, 24)
    lower_gap = _bezier(left, [0.0, mid_y + sag + opening], right, 24)
    centre = (upper_gap[12] + lower_gap[12]) / 2  # t = 0.5 lies on both curves' midline
    t_up, t_low = rng.uniform(0.05, 0.12), rng.uniform(0.08, 0.16)
    upper_lip = _bezier(left, [0.0, mid_y + sag - opening - 2 * t_up], right, 24)
    lower_lip = _bezier(left, [0.0, mid_y + sag + opening + 2 * t_low], right, 24)
    lips = np.vstack([upper_lip, lower_lip[::-1][1:-1]])
    gap = np.vstack([upper_gap, lower_gap[::-1][1:-1]]) if opening else (upper_gap + lower_gap) / 2
    return _with_depth(lips, b, 0.03), _with_depth(gap, b, 0.03), bool(opening), left, centre, right


def sample_face(rng: np.random.Generator) -> Face:
    """Random proportions and expression in the face frame."""
    b = rng.uniform(1.2, 1.45)
    eye_y = rng.uniform(-0.3, -0.05)
    eye_dx = rng.uniform(0.34, 0.48)
    eye_w = rng.uniform(0.14, 0.21)
    openness = rng.uniform(0.25, 0.65) if rng.random() > 0.1 else rng.uniform(0.05, 0.2)
    tilt = np.deg2rad(rng.uniform(-8, 10))

    eyes, lids, irises, corners, pupils = [], [], [], [], []
    for side in (-1, 1):
        polygon, lid, iris, (outer, inner), pupil, _iris_r = _eye(
            rng, side, eye_y + rng.uniform(-0.02, 0.02), eye_dx, eye_w, openness, tilt, b
        )
        eyes.append(polygon)
        lids.append(lid)
        irises.append(iris)
        corners.append((outer, inner))
        pupils.append(pupil)

    brow_gap = rng.uniform(0.18, 0.36)
    brow_thick = rng.uniform(0.05, 0.12)
    inner_x = rng.uniform(0.1, 0.24)
    outer_x = eye_dx + eye_w + rng.uniform(-0.04, 0.12)
    drop, arch = rng.uniform(-0.06, 0.12), rng.uniform(0.0, 0.14)
    brows, brow_ends = [], []
    for side in (-1, 1):
        raise_ = rng.uniform(-0.04, 0.04) + (rng.uniform(0.05, 0.12) if rng.random() < 0.1 else 0.0)
        polygon, outer, inner = _brow(
            rng,
            side,
            inner_x,
            outer_x,
            eye_y - brow_gap - raise_,
            drop + rng.uniform(-0.03, 0.03),
            arch,
            brow_thick,
            b,
        )
        brows.append(polygon)
        brow_ends.append((outer, inner))

    nose_y = rng.uniform(eye_y + 0.38, eye_y + 0.58)
    nose_len = rng.uniform(0.2, 0.4)
    nose_tip = np.array([rng.uniform(-0.03, 0.03), nose_y])
    nose_w = rng.uniform(0.1, 0.18)
    nose_side = _bezier([0.08, eye_y + 0.08], [0.12, (eye_y + nose_y) / 2], [nose_w, nose_y - 0.02], 12)
    nose_line = np.column_stack([nose_side, surface_depth(nose_side[:, 0], nose_side[:, 1], b) + 0.1])
    nostrils = tuple(
        np.column_stack(
            [
                _ellipse(s * nose_w * 0.55, nose_y + 0.03, nose_w * 0.25, 0.035, 16),
                np.full(16, surface_depth(np.array([nose_w]), np.array([nose_y]), b)[0] + nose_len * 0.5),
            ]
        )
        for s in (-1, 1)
    )

    mouth_y = min(rng.uniform(nose_y + 0.22, nose_y + 0.42), b - 0.35)
    lips, gap, is_open, m_left, m_centre, m_right = _mouth(rng, mouth_y, rng.uniform(0.24, 0.42), b)

    theta = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
    jaw = rng.uniform(0.0, 0.25)  # a narrower chin
    ox = np.cos(theta) * (1 - jaw * np.clip(np.sin(theta), 0, None) ** 2)
    outline = np.column_stack([ox, b * np.sin(theta), np.zeros_like(theta)])
    ears = tuple(
        np.column_stack([_ellipse(s * 1.0, eye_y + 0.15, 0.13, 0.26, 20), np.full(20, -0.1)]) for s in (-1, 1)
    )

    tip = np.array([*nose_tip, surface_depth(nose_tip[:1], nose_tip[1:], b)[0] + nose_len])
    flat = [
        brow_ends[0][0],
        brow_ends[0][1],
        brow_ends[1][1],
        brow_ends[1][0],
        corners[0][0],
        pupils[0],
        corners[0][1],
        corners[1][1],
        pupils[1],
        corners[1][0],
    ]
    labels2d = np.array(flat)
    depth = surface_depth(labels2d[:, 0], labels2d[:, 1], b)
    depth[:4] += 0.02
    mouth = np.array([m_left, m_centre, m_right])
    labels = np.vstack(
        [
            np.column_stack([labels2d, depth]),
            tip[None],
            np.column_stack([mouth, surface_depth(mouth[:, 0], mouth[:, 1], b) + 0.03]),
        ]
    )
    return Face(
        b=b,
        outline=outline,
        brows=(brows[0], brows[1]),
        eyes=(eyes[0], eyes[1]),
        irises=(irises[0], irises[1]),
        iris_radius=float(np.mean([np.ptp(i[:, 0]) / 2 for i in irises])),
        lids=(lids[0], lids[1]),
        nose=nose_line,
        nostrils=nostrils,
        lips=lips,
        mouth_gap=gap,
        mouth_open=is_open,
        ears=ears,
        labels=labels,
    )


def silhouette_width(yaw: float) -> float:
    """Half-width of the face outline seen at `yaw` (the ellipsoid's silhouette)."""
    return float(np.sqrt(np.cos(yaw) ** 2 + (DEPTH * np.sin(yaw)) ** 2))

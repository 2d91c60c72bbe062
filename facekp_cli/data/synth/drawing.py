"""Rendering of one synthetic face crop with OpenCV: background clutter, head, features, glasses,
occluders, lighting and camera degradations. Drawing is anti-aliased with 4 fractional bits, and
pixel coordinates use docs/DESIGN.md's convention (origin at the top-left corner of the top-left pixel),
hence the half-pixel shift when handing points to OpenCV (which puts pixel centres on integers).
"""

from __future__ import annotations

import numpy as np

from facekp_cli.data.synth.face import Face, FacePose, bezier, nostril_lag, silhouette_width, turned_share

SHIFT = 4
_ONE = 1 << SHIFT

# Skin tones from very light to very dark (RGB); each face picks a point between neighbours.
_SKIN_RGB = np.array(
    [
        [255, 226, 204],
        [241, 194, 165],
        [224, 172, 137],
        [198, 134, 96],
        [161, 102, 66],
        [112, 68, 42],
        [72, 44, 28],
    ],
    dtype=np.float64,
)
_HAIR_RGB = np.array(
    [
        [20, 16, 14],
        [55, 38, 26],
        [96, 64, 38],
        [160, 120, 70],
        [220, 190, 130],
        [150, 60, 30],
        [180, 180, 180],
        [235, 235, 230],
    ],
    dtype=np.float64,
)


def _cv(points: np.ndarray) -> np.ndarray:
    return np.round((np.asarray(points, np.float64) - 0.5) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def to_bgr(rgb) -> tuple[float, float, float]:
    r, g, b = (float(c) for c in rgb)
    return (b, g, r)


def fill_polygon(cv2, img, points, color) -> None:
    cv2.fillPoly(img, [_cv(points)], color, cv2.LINE_AA, SHIFT)


def draw_polyline(cv2, img, points, color, thickness, closed=False) -> None:
    cv2.polylines(img, [_cv(points)], closed, color, max(1, round(thickness)), cv2.LINE_AA, SHIFT)


def random_color(rng) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(0, 255, 3))


def draw_background(cv2, rng, width: int, height: int) -> np.ndarray:
    """A gradient plus random shapes, lines and blotches: clutter the model must learn to ignore."""
    # Broadcast a row and a column instead of building full coordinate grids: this runs 6000 times.
    xx = np.arange(width, dtype=np.float32)[None, :]
    yy = np.arange(height, dtype=np.float32)[:, None]
    c0, c1 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = xx * np.float32(np.cos(angle)) + yy * np.float32(np.sin(angle))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = (c0 + t[..., None] * (c1 - c0)).astype(np.uint8)
    if rng.random() < 0.5:  # low-frequency blotches
        small = rng.uniform(-60, 60, size=(rng.integers(3, 7), rng.integers(3, 7), 3)).astype(np.float32)
        blotch = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img.astype(np.float32) + blotch, 0, 255).astype(np.uint8)
    if (
        rng.random() < 0.5
    ):  # natural-like: soft multi-scale texture in a muted palette (foliage, walls, rooms)
        img = _soft_texture(cv2, rng, img, width, height)
    size = max(width, height)
    for _ in range(rng.integers(0, 6) if rng.random() < 0.5 else rng.integers(3, 16)):
        kind = rng.integers(0, 4)
        color = random_color(rng)
        centre = rng.uniform(-0.1, 1.1, 2) * (width, height)
        extent = rng.uniform(0.05, 0.5) * size
        if kind == 0:
            corners = centre + rng.uniform(-1, 1, (4, 2)) * extent
            fill_polygon(cv2, img, corners, color)
        elif kind == 1:
            cv2.circle(img, tuple(_cv(centre)[0, 0]), int(extent * _ONE / 2), color, -1, cv2.LINE_AA, SHIFT)
        elif kind == 2:
            ends = centre + rng.uniform(-1, 1, (rng.integers(2, 5), 2)) * extent
            draw_polyline(cv2, img, ends, color, rng.uniform(1, 0.03 * size + 1))
        else:
            x0, y0 = centre
            cv2.rectangle(
                img,
                (int(x0), int(y0)),
                (int(x0 + extent), int(y0 + extent * rng.uniform(0.3, 2))),
                color,
                -1,
                cv2.LINE_AA,
            )
    return img


def _soft_texture(cv2, rng, img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Blend in two octaves of smooth colour noise, then blur: out-of-focus scenery behind a portrait."""
    out = img.astype(np.float32)
    for cells, amount in ((rng.integers(2, 5), 70.0), (rng.integers(6, 16), 35.0)):
        small = rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32)
        small = small * 0.4 + small.mean(axis=2, keepdims=True) * 0.6  # muted: mostly luminance
        out += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) * np.float32(amount)
    out = cv2.GaussianBlur(out, (0, 0), max(width, height) * rng.uniform(0.005, 0.03))
    return np.clip(out, 0, 255).astype(np.uint8)


def _outline_project(pose: FacePose, xy: np.ndarray) -> np.ndarray:
    """Project silhouette points (the head outline, hair mass): scaled by the yaw silhouette, no depth."""
    flat = FacePose(0.0, 0.0, pose.roll, pose.scale, pose.cx, pose.cy)
    xyz = np.column_stack([xy[:, 0] * silhouette_width(pose.yaw), xy[:, 1], np.zeros(len(xy))])
    return flat.project(xyz)


def _hair(rng, face: Face, pose: FacePose, hairline: float):
    """(back mass polygon or None, front cap polygon) in pixels."""
    b = face.b
    grow = rng.uniform(1.04, 1.15)
    top = b * rng.uniform(1.05, 1.2)
    side_y = min(hairline + rng.uniform(0.3, 0.8), 0.1)  # sideburns reach lower than the centre
    phi0 = np.arcsin(np.clip(-side_y / top, -1, 1))
    phi = np.linspace(phi0, np.pi - phi0, 40)
    arc = np.column_stack([grow * np.cos(phi)[::-1] * -1, -top * np.sin(phi)])
    left, right = arc[0], arc[-1]
    # A quadratic Bezier passes (mean of its ends + control) / 2 at its middle: aim the control to put the
    # hairline's middle at `hairline`, slightly off-centre for a parting.
    control_y = 2 * hairline - side_y
    fringe = bezier(right, [rng.uniform(-0.4, 0.4), control_y], left, 20)
    cap_arc = _outline_project(pose, arc)
    cap_line = pose.project(np.column_stack([fringe, np.full(len(fringe), 0.55)]))
    cap = np.vstack([cap_arc, cap_line])
    back = None
    if rng.random() < 0.6:  # long hair falling beside the face
        length = b * rng.uniform(1.0, 2.2)
        width = rng.uniform(1.15, 1.45)
        mass = np.array(
            [[-width, -0.3 * b], [-width * 1.05, length], [width * 1.05, length], [width, -0.3 * b]]
        )
        back = np.vstack(
            [_outline_project(pose, arc * [width / grow, 1.02]), _outline_project(pose, mass[[3, 2, 1, 0]])]
        )
    return back, cap


def draw_face(cv2, rng, img: np.ndarray, face: Face, pose: FacePose) -> dict:
    """Draw head, hair and features onto img in place; returns colours reused by later stages."""
    skin_pos = rng.uniform(0, len(_SKIN_RGB) - 1)
    i = int(skin_pos)
    skin_rgb = _SKIN_RGB[i] + (_SKIN_RGB[min(i + 1, len(_SKIN_RGB) - 1)] - _SKIN_RGB[i]) * (skin_pos - i)
    skin_rgb = np.clip(skin_rgb * rng.uniform(0.9, 1.1, 3), 0, 255)
    skin = to_bgr(skin_rgb)
    shade = to_bgr(skin_rgb * 0.78)
    hair_rgb = np.clip(_HAIR_RGB[rng.integers(len(_HAIR_RGB))] * rng.uniform(0.8, 1.2, 3), 0, 255)
    if rng.random() < 0.05:
        hair_rgb = rng.uniform(0, 255, 3)  # dyed
    hair = to_bgr(hair_rgb)
    px = pose.scale  # pixels per face unit

    brow_top = float(min(face.brows[0][:, 1].min(), face.brows[1][:, 1].min()))
    bald = rng.random() < 0.12
    hairline = brow_top - (rng.uniform(0.05, 0.55) if rng.random() > 0.1 else rng.uniform(-0.08, 0.02))
    back, cap = _hair(rng, face, pose, hairline)
    if back is not None and not bald:
        fill_polygon(cv2, img, back, hair)

    # Neck and shoulders, mostly below the crop.
    neck = np.array([[-0.45, 0.5 * face.b], [-0.5, 3.0 * face.b], [0.5, 3.0 * face.b], [0.45, 0.5 * face.b]])
    fill_polygon(cv2, img, _outline_project(pose, neck), shade)
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    shoulders = np.column_stack([2.6 * np.cos(t), 2.4 * face.b + 0.9 * np.sin(t)])
    fill_polygon(cv2, img, _outline_project(pose, shoulders), random_color(rng))

    for ear in face.ears:
        fill_polygon(cv2, img, pose.project(ear), shade)
    fill_polygon(cv2, img, _outline_project(pose, face.outline[:, :2]), skin)
    if rng.random() < 0.5:  # cheek and jaw shading on the side turned away
        side = -1.0 if face.yaw > 0 else 1.0
        t = np.linspace(-np.pi / 2.5, np.pi / 2.2, 20)
        crescent = np.vstack(
            [
                np.column_stack([side * np.cos(t), face.b * np.sin(t)]),
                np.column_stack([side * 0.8 * np.cos(t[::-1]), face.b * 0.95 * np.sin(t[::-1])]),
            ]
        )
        fill_polygon(cv2, img, _outline_project(pose, crescent), to_bgr(skin_rgb * rng.uniform(0.8, 0.92)))
    if not bald:
        fill_polygon(cv2, img, cap, hair)

    _shade_and_texture(cv2, rng, img, pose, face)

    brow_rgb = hair_rgb * rng.uniform(0.5, 0.9) if rng.random() < 0.8 else rng.uniform(10, 90, 3)
    strokes = rng.random() < 0.7
    for brow, line in zip(face.brows, face.brow_lines, strict=True):
        if strokes:
            _brow_strokes(cv2, rng, img, pose, brow, line, to_bgr(brow_rgb), skin_rgb)
        else:
            fill_polygon(cv2, img, pose.project(brow), to_bgr(brow_rgb))

    iris_rgb = [[70, 45, 25], [110, 70, 35], [60, 110, 160], [80, 120, 80], [120, 120, 130], [30, 22, 18]][
        rng.integers(6)
    ]
    white = to_bgr(np.clip(np.array([235, 232, 225]) * rng.uniform(0.75, 1.05), 0, 255))
    lid_color = to_bgr(skin_rgb * rng.uniform(0.25, 0.5))
    pupils = pose.project(face.labels[[5, 8]])  # the labels themselves: pupils are drawn exactly there
    for eye, iris, lid, pupil in zip(face.eyes, face.irises, face.lids, pupils, strict=True):
        _draw_eye(
            cv2, img, pose, eye, iris, lid, pupil, white, to_bgr(iris_rgb), lid_color, face.iris_radius * px
        )

    # Nose: a side line on the shadowed side and two nostrils.
    nose = face.nose.copy()
    if face.yaw < 0:  # mirror the side line about the nose tip
        nose[:, 0] = 2 * face.labels[10, 0] - nose[:, 0]
    # A frontal nose rarely shows a line (mostly it is the relief shading); a turned one shows its
    # profile against the far cheek, clearer the more it turns.
    turned = turned_share(face.yaw)
    if rng.random() < 0.4 + 0.55 * turned:
        nose_color = to_bgr(skin_rgb * (rng.uniform(0.6, 0.85) - 0.2 * turned))
        _soft_line(cv2, img, pose.project(nose), nose_color, max(1.0, 0.03 * px * (1.0 + turned)))
    if rng.random() < 0.7:  # a soft shadow beside the nose and a highlight on its tip
        side = -1.0 if face.yaw < 0 else 1.0
        tip = face.labels[10, :2] + [nostril_lag(face.yaw), 0.0]
        wing = np.array(
            [
                tip + np.array([side * 0.05, -0.25]),
                tip + np.array([side * 0.2, -0.05]),
                tip + np.array([side * 0.12, 0.06]),
            ]
        )
        _soft_fill(cv2, img, pose.project(np.column_stack([wing, np.zeros(3)])), to_bgr(skin_rgb * 0.7), px)
        glint = pose.project(np.array([[tip[0] - side * 0.02, tip[1] - 0.06, 0.0]]))[0]
        cv2.circle(
            img,
            tuple(_cv(glint)[0, 0]),
            int(max(1.0, px * 0.03) * _ONE),
            to_bgr(np.minimum(skin_rgb * 1.2, 255)),
            -1,
            cv2.LINE_AA,
            SHIFT,
        )
    for nostril in face.nostrils:
        fill_polygon(cv2, img, pose.project(nostril), to_bgr(skin_rgb * 0.4))

    lip_rgb = np.clip(skin_rgb * [1.0, 0.7, 0.7] * rng.uniform(0.65, 0.95), 0, 255)
    if rng.random() < 0.2:
        lip_rgb = np.clip(rng.uniform([120, 0, 20], [230, 60, 90]), 0, 255)  # lipstick
    fill_polygon(cv2, img, pose.project(face.lips), to_bgr(lip_rgb))
    if face.mouth_open:
        gap = pose.project(face.mouth_gap)
        fill_polygon(cv2, img, gap, to_bgr(np.array([60, 15, 20]) * rng.uniform(0.3, 1.0)))
        if rng.random() < 0.7:  # upper teeth: the top half of the opening
            half = len(face.mouth_gap) // 2 + 1
            upper = face.mouth_gap[:half]
            lower = upper.copy()
            lower[:, 1] += (face.mouth_gap[half:, 1].mean() - upper[:, 1].mean()) * 0.45
            teeth = pose.project(np.vstack([upper[2:-2], lower[2:-2][::-1]]))
            fill_polygon(cv2, img, teeth, to_bgr(rng.uniform(200, 245) * np.array([1.0, 0.98, 0.9])))
    else:
        draw_polyline(cv2, img, pose.project(face.mouth_gap), to_bgr(lip_rgb * 0.35), max(1.0, 0.02 * px))

    if rng.random() < 0.85:
        _mouth_creases(cv2, rng, img, pose, face, to_bgr(skin_rgb * rng.uniform(0.4, 0.65)))
    _folds(cv2, rng, img, pose, face, skin_rgb)

    if rng.random() < 0.12:  # stubble or a beard: dark grain over the jaw below the mouth corners
        _beard(cv2, rng, img, pose, face, hair_rgb)
    if rng.random() < 0.12:  # a moustache above the upper lip
        top = face.lips[: len(face.lips) // 2 + 1].copy()
        band = np.vstack([top, top[::-1] - [0, rng.uniform(0.06, 0.14), 0]])
        band[:, 0] *= 1.05
        fill_polygon(cv2, img, pose.project(band), hair)
    if rng.random() < 0.85:
        _relief_shading(cv2, rng, img, pose, face)
    return {"skin": skin, "hair": hair, "px": px}


def _mouth_creases(cv2, rng, img, pose, face, color) -> None:
    """Short dark creases running on from both lip corners: on real faces the mouth's dark line
    ends a little beyond the labelled corner (a generator without them put predicted corners
    ~0.04 face units outward on the real training faces)."""
    gap = face.mouth_gap[:, :2]
    ends = ((gap[0], gap[0] - gap[1]), (gap[24], gap[24] - gap[23]))  # the corners and outward tangents
    for corner, tangent in ends:
        direction = tangent / (np.linalg.norm(tangent) + 1e-9)
        length = rng.uniform(0.02, 0.08)
        bend = np.array([0.0, rng.uniform(-0.5, 0.3) * length])  # corners turn up in a smile
        crease = bezier(corner, corner + direction * length * 0.6, corner + direction * length + bend, 6)
        crease_px = pose.project(np.column_stack([crease, np.zeros(6)]))
        draw_polyline(cv2, img, crease_px, color, max(1.0, 0.015 * pose.scale))


def _folds(cv2, rng, img, pose, face, skin_rgb) -> None:
    """Skin folds real faces show near the labels, drawn soft so they read as shading, not features."""
    px = pose.scale
    for curve in fold_curves(rng, face):
        color = to_bgr(skin_rgb * rng.uniform(0.55, 0.85))
        flat = np.column_stack([curve, np.zeros(len(curve))])
        _soft_line(cv2, img, pose.project(flat), color, max(1.0, 0.02 * px))


def fold_curves(rng, face: Face) -> list[np.ndarray]:
    """Nasolabial folds from the nose wings on past the mouth corners, lines under the eyes and across
    the forehead (face frame). Distractors: they pass beside the labels (in 500 faces, 5 curves came
    within 0.04 face units of one, all at extreme shapes; tests/data/test_synth.py bounds it)."""
    labels = face.labels[:, :2]
    tip, corners = labels[10], (labels[11], labels[13])
    curves = []
    if rng.random() < 0.6:
        for side, corner in zip((-1.0, 1.0), corners, strict=True):
            start = tip + np.array([side * rng.uniform(0.17, 0.25), rng.uniform(-0.06, 0.02)])
            end = corner + np.array([side * rng.uniform(0.05, 0.14), rng.uniform(0.0, 0.16)])
            control = [corner[0] + side * rng.uniform(0.12, 0.22), (start[1] + corner[1]) / 2]
            curves.append(bezier(start, control, end, 10))
    if rng.random() < 0.4:
        for outer, inner in ((4, 6), (9, 7)):
            drop = rng.uniform(0.08, 0.14)
            a, b = labels[inner] + [0, drop], labels[outer] + [0, drop * 0.8]
            curves.append(bezier(a, (a + b) / 2 + [0, rng.uniform(0.02, 0.06)], b, 8))
    if rng.random() < 0.3:
        top = float(labels[:4, 1].min())
        for k in range(int(rng.integers(1, 4))):
            y = top - rng.uniform(0.1, 0.16) * (k + 1)
            half = rng.uniform(0.25, 0.5)
            curves.append(bezier([-half, y], [0.0, y - rng.uniform(0.0, 0.06)], [half, y], 10))
    return curves


def _draw_eye(cv2, img, pose, eye, iris, lid, pupil, white, iris_color, lid_color, iris_px) -> None:
    polygon = pose.project(eye)
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 3
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    patch = img[y0:y1, x0:x1].copy()
    offset = np.array([x0, y0], np.float64)
    fill_polygon(cv2, patch, polygon - offset, white)
    # The iris and pupil are clipped by the lids: draw them on a copy, blend through the eye mask.
    inside = patch.copy()
    fill_polygon(cv2, inside, pose.project(iris) - offset, iris_color)
    centre = pupil - offset
    cv2.circle(
        inside, tuple(_cv(centre)[0, 0]), int(iris_px * 0.45 * _ONE), (12, 10, 10), -1, cv2.LINE_AA, SHIFT
    )
    if iris_px > 3:
        glint = centre + np.array([-0.35, -0.35]) * iris_px
        cv2.circle(
            inside,
            tuple(_cv(glint)[0, 0]),
            int(iris_px * 0.15 * _ONE),
            (245, 245, 245),
            -1,
            cv2.LINE_AA,
            SHIFT,
        )
    mask = np.zeros(patch.shape[:2], np.uint8)
    fill_polygon(cv2, mask, polygon - offset, 255)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    patch = (inside * alpha + patch * (1 - alpha)).astype(np.uint8)
    img[y0:y1, x0:x1] = patch
    draw_polyline(cv2, img, polygon, lid_color, max(1.0, iris_px * 0.18), closed=True)
    draw_polyline(cv2, img, pose.project(lid), lid_color, max(1.0, iris_px * 0.3))
    draw_polyline(
        cv2, img, polygon[: len(polygon) // 2 + 1], (12.0, 10.0, 10.0), max(1.0, iris_px * 0.25)
    )  # lashes


def _soft_fill(cv2, img, polygon: np.ndarray, color, px: float) -> None:
    """A polygon blended in with a blurred edge (shadows have no hard outline)."""
    draw = lambda mask, shifted: fill_polygon(cv2, mask, shifted, 1.0)  # noqa: E731
    _blend_soft(
        cv2,
        img,
        polygon,
        draw,
        pad=int(max(2.0, px * 0.1)) * 2,
        sigma=max(1.0, px * 0.05),
        strength=0.6,
        color=color,
    )


def _soft_line(cv2, img, points: np.ndarray, color, thickness: float) -> None:
    """A line blended in with a blurred edge, like a shading fold."""
    draw = lambda mask, shifted: draw_polyline(cv2, mask, shifted, 1.0, thickness)  # noqa: E731
    _blend_soft(
        cv2,
        img,
        points,
        draw,
        pad=int(thickness * 3) + 2,
        sigma=max(0.7, thickness * 0.8),
        strength=0.8,
        color=color,
    )


def _blend_soft(
    cv2, img, points: np.ndarray, draw, *, pad: int, sigma: float, strength: float, color
) -> None:
    """Blend `color` in through a blurred mask that `draw(mask, points - corner)` paints, on the
    points' box grown by `pad` (clipped to the image): soft shapes with no hard outline."""
    h, w = img.shape[:2]
    x0, y0 = np.clip(np.floor(points.min(axis=0)).astype(int) - pad, 0, [w, h])
    x1, y1 = np.clip(np.ceil(points.max(axis=0)).astype(int) + pad, 0, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    draw(mask, points - [x0, y0])
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)[..., None] * np.float32(strength)
    patch = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = (patch * (1 - mask) + np.array(color, np.float32) * mask).astype(np.uint8)


def _brow_strokes(cv2, rng, img, pose, brow, line, color, skin_rgb) -> None:
    """Hair-like brow: a faint base fill, then short slanted strokes growing outward along the brow."""
    faint = to_bgr(np.array(color[::-1]) * 0.6 + skin_rgb * 0.4)
    fill_polygon(cv2, img, pose.project(brow), faint)
    px = pose.scale
    n = int(np.clip(px * 0.6, 6, 40))
    thickness = float(np.ptp(brow[:, 1])) * 0.8
    for k in range(n):
        t = (k + rng.random()) / n
        i = min(int(t * (len(line) - 1)), len(line) - 2)
        start = line[i, :2] + [0.0, thickness * rng.uniform(-0.4, 0.45)]
        direction = line[i + 1, :2] - line[i, :2]
        direction = direction / (np.linalg.norm(direction) + 1e-9)
        end = (
            start + direction * thickness * rng.uniform(0.8, 1.6) + [0.0, -thickness * rng.uniform(0.1, 0.5)]
        )
        stroke = np.column_stack([np.array([start, end]), np.zeros(2)])
        shade = tuple(c * rng.uniform(0.7, 1.15) for c in color)
        draw_polyline(cv2, img, pose.project(stroke), shade, max(1.0, px * 0.012))


def _head_region(cv2, img, pose, face, min_side: int):
    """The head's pixel box, its outline mask there (0..1) and the face-frame coordinates (x, y in
    head half-widths) of every pixel of the box; None when the head covers too little of the image."""
    h, w = img.shape[:2]
    outline = _outline_project(pose, face.outline[:, :2])
    x0, y0 = np.clip(np.floor(outline.min(axis=0)).astype(int) - 1, 0, [w, h])
    x1, y1 = np.clip(np.ceil(outline.max(axis=0)).astype(int) + 2, 0, [w, h])
    if x1 - x0 < min_side or y1 - y0 < min_side:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    fill_polygon(cv2, mask, outline - [x0, y0], 255)
    # Undo the pose's translation, roll and scale.
    xx = np.arange(x0, x1, dtype=np.float32)[None, :] + np.float32(0.5 - pose.cx)
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] + np.float32(0.5 - pose.cy)
    c, s_ = np.float32(np.cos(pose.roll) / pose.scale), np.float32(np.sin(pose.roll) / pose.scale)
    box = (slice(y0, y1), slice(x0, x1))
    return box, mask.astype(np.float32) / 255.0, xx * c + yy * s_, -xx * s_ + yy * c


def _apply_gain(img, box, mask, gain) -> None:
    """Multiply the head's pixels by `gain` (1 leaves them), faded in by the outline mask."""
    alpha = mask * (gain - 1.0)
    img[box] = np.clip(img[box].astype(np.float32) * (1.0 + alpha[..., None]), 0, 255).astype(np.uint8)


def _shade_and_texture(cv2, rng, img, pose, face) -> None:
    """Light the head like a rounded surface (brighter towards a light direction, darker at the rim) and
    add low-contrast skin texture, inside the head outline only."""
    region = _head_region(cv2, img, pose, face, min_side=3)
    if region is None:
        return
    box, mask, fx, fy = region
    fy = fy / np.float32(face.b)
    rim = np.clip(fx**2 + fy**2, 0, 1)
    light = rng.normal(size=2)
    light = (light / (np.linalg.norm(light) + 1e-9)).astype(np.float32)
    gain = 1.0 + np.float32(rng.uniform(0.05, 0.25)) * (fx * light[0] + fy * light[1])
    gain = gain - np.float32(rng.uniform(0.1, 0.3)) * rim**2
    if rng.random() < 0.8:  # skin texture: blurred noise, a few percent
        rows, cols = mask.shape
        small = rng.standard_normal((max(2, rows // 3), max(2, cols // 3))).astype(np.float32)
        grain = cv2.resize(small, (cols, rows), interpolation=cv2.INTER_LINEAR)
        gain = gain + grain * np.float32(rng.uniform(0.01, 0.05))
    _apply_gain(img, box, mask, gain)


def _beard(cv2, rng, img, pose, face, hair_rgb) -> None:
    t = np.linspace(0.15 * np.pi, 0.85 * np.pi, 24)
    mouth_y = float(face.labels[11:, 1].mean())
    lower = np.column_stack([np.cos(t) * 0.95, face.b * np.sin(t) * 1.02])
    upper = np.array([[-0.85, mouth_y - 0.1], [0.0, mouth_y - 0.12], [0.85, mouth_y - 0.1]])
    region = pose.project(np.column_stack([np.vstack([lower, upper]), np.zeros(len(lower) + 3)]))
    h, w = img.shape[:2]
    x0, y0 = np.clip(np.floor(region.min(axis=0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(region.max(axis=0)).astype(int) + 1, 0, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.float32)
    fill_polygon(cv2, mask, region - [x0, y0], 1.0)
    density = rng.uniform(0.3, 0.9)
    grain = (rng.random(mask.shape) < density).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), 0.7) * mask
    color = np.array(to_bgr(hair_rgb * 0.6), np.float32)
    patch = img[y0:y1, x0:x1].astype(np.float32)
    alpha = grain[..., None] * np.float32(rng.uniform(0.4, 0.9))
    img[y0:y1, x0:x1] = (patch * (1 - alpha) + color * alpha).astype(np.uint8)


def _relief_shading(cv2, rng, img, pose, face) -> None:
    """Light the drawn face as a surface with relief: a nose ridge ending in the tip, eye sockets under
    a brow ridge, cheekbones, the mouth and chin, from a random light (Lambert, normalised so a flat
    facing surface keeps its colour). Real faces show their features mostly through such shading."""
    region = _head_region(cv2, img, pose, face, min_side=4)
    if region is None:
        return
    box, mask, fx, fy = region
    labels = face.labels[:, :2].astype(np.float32)
    height = np.zeros_like(fx)

    def bump(centre, sx, sy, amount):
        nonlocal height
        height = height + np.float32(amount) * np.exp(
            -(((fx - centre[0]) / np.float32(sx)) ** 2) - ((fy - centre[1]) / np.float32(sy)) ** 2
        )

    tip = labels[10]
    root = (labels[6] + labels[7]) / 2
    for t in np.linspace(0.0, 1.0, 6):  # the ridge, rising from the root to the tip
        bump(root + (tip - root) * t, 0.09, 0.09, 0.06 + 0.1 * t)
    lag = np.float32(nostril_lag(face.yaw))  # the nose's base is nearer the face than its tip
    bump(tip + np.float32([lag * 0.5, 0.02]), 0.11, 0.08, rng.uniform(0.12, 0.22))
    bump(tip + np.float32([lag, rng.uniform(0.1, 0.16)]), 0.16, 0.05, -0.05)  # under the nose
    for pupil, brow in ((labels[5], labels[[0, 1]].mean(axis=0)), (labels[8], labels[[2, 3]].mean(axis=0))):
        bump(pupil + np.float32([0.0, -0.02]), 0.2, 0.12, -rng.uniform(0.06, 0.14))  # eye socket
        bump(brow, 0.24, 0.07, rng.uniform(0.02, 0.07))  # brow ridge
        bump([pupil[0] * 1.1, pupil[1] + 0.35], 0.2, 0.14, rng.uniform(0.02, 0.07))  # cheekbone
    mouth = labels[11:14].mean(axis=0)
    bump(mouth, 0.3, 0.1, rng.uniform(0.02, 0.05))
    bump(mouth + np.float32([0.0, 0.2]), 0.25, 0.06, -0.03)  # the fold above the chin
    gy, gx = np.gradient(height, 1.0 / pose.scale)  # slopes per face unit
    light = np.array([rng.normal(0, 0.6), rng.normal(-0.4, 0.5), rng.uniform(0.5, 1.0)], np.float32)
    light /= np.linalg.norm(light)
    lambert = (-gx * light[0] - gy * light[1] + light[2]) / np.sqrt(gx**2 + gy**2 + 1)
    ambient = np.float32(rng.uniform(0.35, 0.75))
    gain = (ambient + (1 - ambient) * np.clip(lambert, 0, None)) / (ambient + (1 - ambient) * light[2])
    _apply_gain(img, box, mask, gain)

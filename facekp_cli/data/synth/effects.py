"""What happens around and after the face is drawn: glasses, occluders, lighting and the camera
(blur, noise, grey images). None of these move a label; they only make the points harder to see.
"""

from __future__ import annotations

import numpy as np

from facekp_cli.data.synth.drawing import draw_polyline, fill_polygon, random_color, to_bgr
from facekp_cli.data.synth.face import Face, FacePose


def draw_glasses(cv2, rng, img: np.ndarray, face: Face, pose: FacePose, px: float) -> None:
    """Frames around both eyes (sometimes dark lenses), a bridge and temple arms."""
    eye_w = float(np.ptp(face.eyes[0][:, 0])) / 2
    rx, ry = eye_w * rng.uniform(1.3, 1.7), eye_w * rng.uniform(0.9, 1.3)
    color = random_color(rng) if rng.random() < 0.4 else (20.0, 20.0, 20.0)
    thickness = max(1.0, px * rng.uniform(0.015, 0.05))
    sunglasses = rng.random() < 0.2
    t = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    rims = []
    for eye in face.eyes:
        cx, cy = eye[:, 0].mean(), eye[:, 1].mean() + eye_w * 0.1
        rim = np.column_stack(
            [cx + rx * np.cos(t), cy + ry * np.sin(t), eye[:, 2].mean() + np.zeros_like(t) + 0.12]
        )
        rims.append(pose.project(rim))
        if sunglasses:
            lens = img.copy()
            fill_polygon(cv2, lens, rims[-1], to_bgr(rng.uniform(10, 60, 3)))
            alpha = rng.uniform(0.6, 0.9)
            img[:] = (lens * alpha + img * (1 - alpha)).astype(np.uint8)
    for rim in rims:
        draw_polyline(cv2, img, rim, color, thickness, closed=True)
    bridge_y = face.eyes[0][:, 1].mean() - eye_w * 0.2
    inner_l = face.eyes[0][:, 0].mean() + rx
    inner_r = face.eyes[1][:, 0].mean() - rx
    bridge = np.array([[inner_l, bridge_y, 0.95], [0.0, bridge_y - 0.05, 1.0], [inner_r, bridge_y, 0.95]])
    draw_polyline(cv2, img, pose.project(bridge), color, thickness)
    for side, eye in ((-1, face.eyes[0]), (1, face.eyes[1])):
        start = eye[:, 0].mean() + side * rx
        arm = np.array([[start, bridge_y, 0.5], [side * 1.0, bridge_y + 0.05, 0.0]])
        draw_polyline(cv2, img, pose.project(arm), color, thickness)


def draw_occluder(cv2, rng, img: np.ndarray, labels_px: np.ndarray, skin) -> None:
    """A hand, a blob or a bar over part of the face (labels stay where the features are)."""
    height, width = img.shape[:2]
    span = float(np.ptp(labels_px[:, 0]) + np.ptp(labels_px[:, 1])) / 2
    target = labels_px[rng.integers(len(labels_px))]
    kind = rng.integers(0, 3)
    if kind == 0:  # a hand-like blob in skin colour coming in from an edge
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-9
        tip = target + direction * span * rng.uniform(0.1, 0.4)
        base = tip + direction * span * 1.5
        normal = np.array([-direction[1], direction[0]]) * span * rng.uniform(0.15, 0.3)
        polygon = np.array([tip - normal, tip + normal, base + normal * 1.4, base - normal * 1.4])
        fill_polygon(cv2, img, polygon, tuple(c * rng.uniform(0.8, 1.1) for c in skin))
    elif kind == 1:
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 9)))
        radii = span * rng.uniform(0.12, 0.35, len(angles))
        centre = target + rng.normal(size=2) * span * 0.15
        polygon = centre + np.column_stack([np.cos(angles), np.sin(angles)]) * radii[:, None]
        fill_polygon(cv2, img, polygon, random_color(rng))
    else:
        angle = rng.uniform(0, np.pi)
        d = np.array([np.cos(angle), np.sin(angle)]) * max(width, height)
        draw_polyline(cv2, img, [target - d, target + d], random_color(rng), span * rng.uniform(0.05, 0.15))


def light_and_camera(cv2, rng, img: np.ndarray) -> np.ndarray:
    """Lighting gradient, a soft cast shadow, colour cast, blur, noise and sometimes grey."""
    height, width = img.shape[:2]
    out = img.astype(np.float32)
    xx = np.arange(width, dtype=np.float32)[None, :]
    yy = np.arange(height, dtype=np.float32)[:, None]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - width / 2) * np.cos(angle) + (yy - height / 2) * np.sin(angle)) / max(width, height)
    gain = (1.0 + ramp * rng.uniform(0.0, 1.0)).astype(np.float32)
    if rng.random() < 0.35:  # a soft-edged shadow across part of the image
        angle2 = rng.uniform(0, 2 * np.pi)
        edge = (xx - width * rng.uniform(0.2, 0.8)) * np.cos(angle2) + (
            yy - height * rng.uniform(0.2, 0.8)
        ) * np.sin(angle2)
        softness = max(width, height) * rng.uniform(0.02, 0.15)
        gain = gain * (1.0 - rng.uniform(0.25, 0.6) / (1.0 + np.exp(-edge / softness))).astype(np.float32)
    tint = (rng.uniform(0.6, 1.3) * rng.uniform(0.85, 1.15, 3)).astype(np.float32)
    out *= gain[..., None] * tint
    out += np.float32(rng.uniform(-25, 25))
    if rng.random() < 0.35:
        sigma = rng.uniform(0.4, 1.6) * max(width, height) / 160
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    elif rng.random() < 0.08:  # motion blur
        k = int(rng.integers(3, 9))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        out = cv2.filter2D(out, -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < 0.5:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(rng.uniform(2, 14))
    if rng.random() < 0.5:  # muted colour: real photos are less saturated than random paint
        grey = out.mean(axis=2, keepdims=True)
        out = grey + (out - grey) * np.float32(rng.uniform(0.3, 1.0))
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.15:
        gray = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        out = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    return out

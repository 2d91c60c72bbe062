"""The 14-point schema: names, order and horizontal-flip partners.

This is the only place the schema lives; everything else imports it. Left and right
are as seen in the image (not from the subject's view), see docs/DESIGN.md.
"""

from __future__ import annotations

NAMES: tuple[str, ...] = (
    "left_eyebrow_outer",
    "left_eyebrow_inner",
    "right_eyebrow_inner",
    "right_eyebrow_outer",
    "left_eye_outer",
    "left_pupil",
    "left_eye_inner",
    "right_eye_inner",
    "right_pupil",
    "right_eye_outer",
    "nose_tip",
    "mouth_left",
    "mouth_center",
    "mouth_right",
)
NUM_KEYPOINTS = len(NAMES)

# 0-based index of the point each point becomes under a horizontal flip.
FLIP_INDEX: tuple[int, ...] = (3, 2, 1, 0, 9, 8, 7, 6, 5, 4, 10, 13, 12, 11)

# Outer eye corners: the normaliser of NME and PCK (points 5 and 10, 1-based).
LEFT_EYE_OUTER = NAMES.index("left_eye_outer")
RIGHT_EYE_OUTER = NAMES.index("right_eye_outer")
# The other points code refers to by role (face crops, tracking, alignment): only here, by name.
LEFT_EYE_INNER = NAMES.index("left_eye_inner")
RIGHT_EYE_INNER = NAMES.index("right_eye_inner")
MOUTH_LEFT = NAMES.index("mouth_left")
MOUTH_CENTER = NAMES.index("mouth_center")
MOUTH_RIGHT = NAMES.index("mouth_right")

# Pairs whose left member must lie left of its right member on an upright face.
LEFT_RIGHT_PAIRS: tuple[tuple[int, int], ...] = tuple((i, j) for i, j in enumerate(FLIP_INDEX) if i < j)

CSV_HEADER: tuple[str, ...] = (
    "filename",
    *(f"{axis}{k}" for k in range(1, NUM_KEYPOINTS + 1) for axis in ("x", "y")),
)


def _check_schema() -> None:
    assert len(FLIP_INDEX) == NUM_KEYPOINTS
    assert all(FLIP_INDEX[FLIP_INDEX[i]] == i for i in range(NUM_KEYPOINTS)), "flip map must be an involution"


_check_schema()

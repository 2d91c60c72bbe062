"""What a path names: image, video file or camera. Standard library only, so the CLI
may import it at module level without slowing `facekp --help`."""

from __future__ import annotations

import os
import re
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")
CAMERA_PATTERN = re.compile(r"^(?:camera:(\d+)|/dev/video(\d+))$")


def camera_index(text: str) -> int | None:
    """`camera:0` or `/dev/video0` -> 0; anything else -> None."""
    match = CAMERA_PATTERN.match(str(text))
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def is_video_input(text: str | os.PathLike[str]) -> bool:
    text = os.fspath(text)
    return camera_index(text) is not None or Path(text).suffix.lower() in VIDEO_EXTENSIONS


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS

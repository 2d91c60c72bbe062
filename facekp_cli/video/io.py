"""Video files and cameras in, annotated video out, through OpenCV's FFmpeg backend.

OpenCV (opencv-python-headless, already a dependency, FFmpeg inside the wheel) rather than PyAV:
it reads mp4, avi, mov and mkv here, decodes a 640x480 frame in ~1-2 ms (docs/bench/video.md)
and adds nothing to install. Frames are decoded on a background thread (OpenCV releases the GIL)
while the model runs on the previous one.

A broken or truncated file is read up to where it breaks: `VideoFrames.stopped_early` then says
why, and the frames before it stand. FFmpeg's own log lines are silenced so that the user sees one
warning from facekp instead of a screenful from the decoder.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekp_cli.errors import DataError, UsageError
from facekp_cli.media import camera_index

# Read by OpenCV's FFmpeg wrapper when it first opens a file: -8 is AV_LOG_QUIET.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
DEFAULT_FPS = 25.0  # when a file or camera does not say

# A frame count in the header is an estimate for some containers: a file is called truncated only
# when it stops this far short of it.
TRUNCATION_SLACK = 0.02

# .webm is the one a browser plays (VP8 from the FFmpeg inside the OpenCV wheel; VP9 encodes
# several times slower on CPU for the same picture, docs/bench/video.md); mp4v plays in desktop players.
WRITER_CODECS = {
    ".webm": "VP80",
    ".mp4": "mp4v",
    ".m4v": "mp4v",
    ".mov": "mp4v",
    ".mkv": "mp4v",
    ".avi": "MJPG",
}


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based, in the order decoded
    time_s: float  # from the start: the container's timestamp for files, the clock for cameras
    image: np.ndarray  # (H, W, 3) uint8 RGB


class VideoFrames:
    """Iterate the frames of a video file or a camera, decoded ahead on a background thread."""

    def __init__(self, source: str | os.PathLike[str], *, max_frames: int | None = None, prefetch: int = 4):
        import cv2

        self.source = os.fspath(source)
        self.camera = camera_index(self.source)
        if self.camera is None:
            path = Path(self.source)
            if not path.exists():
                raise DataError(f"{path}: no such file")
            if path.is_dir():
                raise DataError(f"{path}: is a folder, not a video")
        self._cap = cv2.VideoCapture(self.camera if self.camera is not None else self.source)
        if not self._cap.isOpened():
            self._cap.release()
            what = f"camera {self.camera}" if self.camera is not None else self.source
            raise DataError(f"{what}: cannot open video (not a video, or a format FFmpeg cannot read)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT) if self.camera is None else 0
        self.frame_count = int(count) if count and count > 0 else None  # the header's claim
        self.max_frames = max_frames
        self.frames_read = 0
        self.stopped_early: str | None = None  # why the file ended before its header said it would
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_stamp: float | None = None

    @property
    def name(self) -> str:
        return f"camera:{self.camera}" if self.camera is not None else self.source

    def _reader(self) -> None:
        import cv2

        started = time.monotonic()
        index = 0
        error: str | None = None
        try:
            while not self._stop.is_set() and (self.max_frames is None or index < self.max_frames):
                ok, bgr = self._cap.read()
                if not ok or bgr is None:
                    break
                stamp = time.monotonic() - started if self.camera is not None else self._file_time(index)
                self._put(Frame(index, stamp, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                index += 1
        except Exception as exc:  # a decoder failure ends the video where it is; the frames read stand
            error = f"decoding stopped at frame {index} ({exc!r})"
        self.frames_read = index
        short = self.frame_count is not None and index < self.frame_count * (1 - TRUNCATION_SLACK) - 1
        if short and self._last_stamp is not None:
            # a variable frame rate has fewer frames than its header's duration x fps: judge by time
            step, duration = 1.0 / self.fps, self.frame_count / self.fps
            short = self._last_stamp + step < duration * (1 - TRUNCATION_SLACK) - step
        if error is None and self.camera is None and self.max_frames is None and short:
            error = f"the file ends at frame {index} of the {self.frame_count} its header announces"
        self.stopped_early = error
        self._put(None)

    def _file_time(self, index: int) -> float:
        """The frame's presentation time from the container (phone videos have variable frame
        rates, and the One-Euro filter runs on time); index / fps where the container gives none."""
        import cv2

        msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        if not np.isfinite(msec) or msec < 0 or (msec == 0 and index > 0):
            return index / self.fps
        stamp = msec / 1000.0
        if self._last_stamp is not None and stamp <= self._last_stamp:  # a broken or repeated stamp
            stamp = self._last_stamp + 1.0 / self.fps
        self._last_stamp = stamp
        return stamp

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Frame]:
        self._thread = threading.Thread(target=self._reader, name="facekp-video", daemon=True)
        self._thread.start()
        while True:
            item = self._queue.get()
            if item is None:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._cap.release()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Annotated frames to a video file (VP8 in .webm, mp4v in .mp4/.mov/.mkv, MJPG in .avi), written under a
    temporary name beside the target and renamed onto it by `finish()`, so a failed run leaves the
    old file, never half a new one."""

    def __init__(self, target: str | os.PathLike[str], fps: float, width: int, height: int) -> None:
        import cv2

        self.target = Path(target)
        suffix = self.target.suffix.lower()
        if suffix not in WRITER_CODECS:
            known = ", ".join(WRITER_CODECS)
            raise UsageError(f"--draw {self.target}: unknown video type '{suffix}' (use {known})")
        if self.target.is_dir():
            raise UsageError(f"{self.target}: cannot write output (it is a folder)")
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{self.target}: cannot write output ({exc.strerror or exc})") from exc
        self.partial = self.target.with_name(f".{self.target.stem}.{os.getpid()}.partial{suffix}")
        fourcc = cv2.VideoWriter_fourcc(*WRITER_CODECS[suffix])
        self._writer = cv2.VideoWriter(str(self.partial), fourcc, fps, (width, height))
        if not self._writer.isOpened():
            self.partial.unlink(missing_ok=True)
            raise UsageError(f"{self.target}: cannot write video (OpenCV could not open a {suffix} writer)")
        self.size = (width, height)
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def finish(self) -> Path:
        self._writer.release()
        os.replace(self.partial, self.target)
        return self.target

    def abort(self) -> None:
        self._writer.release()
        self.partial.unlink(missing_ok=True)


def write_video(path: str | os.PathLike[str], frames, fps: float = DEFAULT_FPS) -> Path:
    """Write RGB frames (all the same size) to a video file: for clips in tests and benchmarks."""
    writer = None
    try:
        for frame in frames:
            if writer is None:
                writer = VideoWriter(path, fps, frame.shape[1], frame.shape[0])
            writer.write(frame)
        if writer is None:
            raise UsageError(f"{path}: no frames to write")
        return writer.finish()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise

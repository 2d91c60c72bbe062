"""`facekp overlay`: an asset (glasses, a mask, a moustache) drawn on every face of images or a video.

Images: the keypoints come from the batched image path (with infer.detect for whole photos) and
each picture is written to the output folder under its own name. A video: the frames go through
the same tracker and smoother as `facekp infer VIDEO`, so the asset follows each face steadily,
and the result is one video file. A broken or truncated video keeps the frames read (exit 4).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from facekp_cli.apps.overlay import load_asset, overlay_faces
from facekp_cli.errors import UsageError
from facekp_cli.outputs import check_name_length, refuse_input_as_output
from facekp_cli.predict.backends import open_predictor
from facekp_cli.settings import Settings


@dataclass(frozen=True)
class OverlayResult:
    out: Path
    kind: str  # "images" or "video"
    items: int  # images, or frames of the video
    faces: int  # faces the asset was drawn on
    failed: tuple[tuple[str, str], ...]  # unreadable images: (path, why)
    seconds: float
    asset: str
    stopped_early: str | None = None  # a broken video: why it ended early

    @property
    def partial(self) -> bool:
        return bool(self.failed) or self.stopped_early is not None


def run(
    settings: Settings,
    inputs: Sequence[str | Path],
    out: Path,
    *,
    ckpt: Path | None = None,
    model: Path | None = None,
    asset_name: str | None = None,
    assets_file: Path | None = None,
    max_frames: int | None = None,
    on_item: Callable[[], None] | None = None,
) -> OverlayResult:
    from facekp_cli.media import is_video_input
    from facekp_cli.model.resolve import resolve

    check_name_length(out)  # before the model loads
    name = asset_name or settings.overlay.asset
    asset = load_asset(name, assets_file or settings.overlay.assets_file)
    choice = resolve(settings, ckpt, model, device=settings.infer.device)
    ckpt, model = choice.ckpt, choice.model
    videos = [i for i in inputs if is_video_input(i)]
    if videos and len(inputs) > 1:
        raise UsageError("a video is overlaid on its own: pass one video, or image files and folders")
    if videos and Path(out).suffix.lower() in ("", ".jpg", ".png"):
        raise UsageError(f"--out {out}: a video input needs a video output file (e.g. out.mp4)")
    if videos:
        refuse_input_as_output(out, videos)
    else:
        sources, names = _plan_images(settings, inputs, Path(out))  # before the model loads
    predictor = open_predictor(ckpt, model, settings.infer.device)
    started = time.perf_counter()
    if videos:
        frames, faces, stopped = _video(
            settings, predictor, str(videos[0]), Path(out), asset, max_frames, on_item
        )
        return OverlayResult(
            Path(out), "video", frames, faces, (), time.perf_counter() - started, name, stopped
        )
    return _images(settings, predictor, sources, names, asset, on_item, started)


def _plan_images(settings, inputs, out_dir: Path):
    from facekp_cli.media import VIDEO_EXTENSIONS
    from facekp_cli.outputs import OutputFolder
    from facekp_cli.predict.sources import find_images

    if out_dir.suffix.lower() in VIDEO_EXTENSIONS:
        raise UsageError(f"--out {out_dir}: images go to a folder, not a video file")
    sources = find_images(inputs, recursive=settings.infer.recursive)
    return sources, OutputFolder(out_dir, sources, ".jpg")  # refuses inputs, escapes; unique names


def _images(settings, predictor, sources, names, asset, on_item, started) -> OverlayResult:
    from facekp_cli.plots import save_image
    from facekp_cli.predict.stream import predict_images
    from facekp_cli.services.infer import finding

    cfg = settings.infer
    out_dir = names.out_dir
    failed: list[tuple[str, str]] = []
    faces = 0
    for result in predict_images(
        predictor,
        sources,
        batch_size=cfg.batch_size,
        workers=cfg.num_workers,
        keep_images=True,
        **finding(settings),
    ):
        if result.error is not None:
            failed.append((str(result.source.path), result.error))
        else:
            points = [result.points] if result.faces is None else [f.points for f in result.faces]
            faces += len(points)
            save_image(names.path(names.name(result.source)), overlay_faces(result.image, asset, points))
        if on_item is not None:
            on_item()
    return OverlayResult(
        out_dir, "images", len(sources), faces, tuple(failed), time.perf_counter() - started, asset.name
    )


def _video(settings, predictor, source: str, out: Path, asset, max_frames, on_item):
    from facekp_cli.video.io import VideoFrames, VideoWriter
    from facekp_cli.video.pipeline import make_tracker, track_video

    faces = frames_done = 0
    with VideoFrames(source, max_frames=max_frames) as frames:
        writer = VideoWriter(out, frames.fps, frames.width, frames.height)
        try:
            # a video is a scene, not a face crop: faces are searched unless --no-detect says otherwise
            tracker = make_tracker(settings, predictor, settings.infer.detect is not False)
            for frame, tracked in track_video(tracker, predictor, frames):
                writer.write(overlay_faces(frame.image, asset, [f.points for f in tracked]))
                faces += len(tracked)
                frames_done += 1
                if on_item is not None:
                    on_item()
        except BaseException:
            writer.abort()
            raise
        writer.finish()
        return frames_done, faces, frames.stopped_early

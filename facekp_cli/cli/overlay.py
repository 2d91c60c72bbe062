"""`facekp overlay`: glasses, a mask or a moustache (or your own picture) on every face."""

from __future__ import annotations

from pathlib import Path

import typer

from facekp_cli.cli.context import (
    build_settings,
    ckpt_option,
    detect_help,
    echo_err,
    make_console,
    model_option,
    path_completer,
    report_skipped,
)
from facekp_cli.errors import ExitCode

app = typer.Typer(
    help="Draw a picture with transparency (glasses, mask, moustache) on every face of images or a video.",
    context_settings={"allow_interspersed_args": True},
    subcommand_metavar="",
    no_args_is_help=True,
)


def complete_asset(ctx: typer.Context, incomplete: str) -> list[str]:
    """Asset names from --assets FILE if given, else the shipped ones (stdlib only: runs on TAB)."""
    from importlib import resources

    from facekp_cli.compat import tomllib

    path = ctx.params.get("assets_file") or resources.files("facekp_cli").joinpath(
        "overlay_assets", "assets.toml"
    )
    try:
        with open(str(path), "rb") as fh:
            names = sorted(tomllib.load(fh))
    except (OSError, ValueError):
        return []
    return [name for name in names if name.startswith(incomplete)]


@app.callback(invoke_without_command=True)
def overlay(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(
        ..., metavar="PATH", help="Image files, folders or glob patterns; or one video file or camera:N."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for images, or the video file (e.g. out.mp4)."),
    asset: str | None = typer.Option(
        None,
        "--asset",
        "-a",
        help="What to draw: glasses, mask, moustache, or a name in --assets.",
        autocompletion=complete_asset,
    ),
    assets_file: Path | None = typer.Option(
        None,
        "--assets",
        help="A TOML file of your own assets (see facekp_cli/overlay_assets/assets.toml).",
        autocompletion=path_completer(".toml"),
    ),
    ckpt: Path | None = ckpt_option(),
    model: Path | None = model_option(),
    detect: bool | None = typer.Option(
        None,
        "--detect/--no-detect",
        help=detect_help("an asset per face; a video is always searched unless --no-detect"),
    ),
    recursive: bool | None = typer.Option(
        None, "--recursive/--no-recursive", "-r", help="Search subfolders."
    ),
    detect_every: int | None = typer.Option(
        None, "--detect-every", min=1, help="Video: run the face detector every N frames."
    ),
    smooth: bool | None = typer.Option(
        None, "--smooth/--no-smooth", help="Video: One-Euro smoothing (default on)."
    ),
    max_frames: int | None = typer.Option(None, "--max-frames", min=1, help="Video: stop after N frames."),
) -> None:
    """Place the asset by each face's keypoints; unreadable inputs are reported (exit code 4)."""
    from facekp_cli.services import overlay as service

    settings = build_settings(
        ctx,
        **{
            "overlay.asset": asset,
            "overlay.assets_file": str(assets_file) if assets_file else None,
            "infer.detect": detect,
            "infer.recursive": recursive,
            "video.detect_every": detect_every,
            "video.smooth": smooth,
        },
    )
    result = service.run(settings, paths, out, ckpt=ckpt, model=model, max_frames=max_frames)
    for path, why in result.failed:
        echo_err(f"facekp: skipped {why}" if why.startswith(path) else f"facekp: skipped {path}: {why}")
    what = "frames" if result.kind == "video" else "images"
    make_console(ctx).print(
        f"wrote {result.out}: {result.asset} on {result.faces} faces in {result.items} {what} "
        f"({result.seconds:.1f} s)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if result.stopped_early:
        echo_err(
            f"facekp: warning: {paths[0]}: {result.stopped_early}; the {result.items} frames read are kept"
        )
    if result.partial:
        if result.failed:
            report_skipped(list(result.failed), result.items)
        raise typer.Exit(int(ExitCode.PARTIAL))

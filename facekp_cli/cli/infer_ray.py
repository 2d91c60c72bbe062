"""`facekp infer --engine ray`: the Ray Data path of infer (services/infer_ray.py), printed like infer."""

from __future__ import annotations

from pathlib import Path

import typer

from facekp_cli.cli.context import build_settings, echo_err, make_console
from facekp_cli.errors import ExitCode


def run_ray(
    ctx: typer.Context,
    paths: list[str],
    out: Path,
    *,
    ckpt: Path | None,
    model: Path | None,
    fmt: str | None,
    resume: bool,
    draw: Path | None,
    flags: dict,
) -> None:
    from facekp_cli.errors import UsageError

    if draw is not None:
        raise UsageError("--draw is not available with --engine ray (draw a few files with the local engine)")

    from facekp_cli.cli.context import state
    from facekp_cli.cli.progress import progress_stream, say
    from facekp_cli.services import infer_ray as service

    settings = build_settings(ctx, **flags)
    stream = progress_stream(ctx)

    def on_start(total: int) -> None:
        say(stream, "infer", f"{total} images to do on Ray ({settings.ray.pool_size} model actors)")

    # Ray Data's own progress bars on a terminal; plain lines (ours) in a log, nothing with --quiet.
    bars = stream is None and not state(ctx).quiet
    result = service.run(
        settings, paths, out, ckpt=ckpt, model=model, fmt=fmt, resume=resume, on_start=on_start,
        progress_bars=bars,
    )  # fmt: skip
    for failed in result.failed:
        echo_err(f"facekp: skipped {failed.error}")
    say(stream, "infer", f"{result.images}/{result.images} images in {result.seconds:.1f} s")
    done = f" (+{result.already_done} already in earlier shards)" if result.already_done else ""
    failed = f", {len(result.failed)} failed" if result.failed else ""
    make_console(ctx).print(
        f"wrote {len(result.shards)} {result.format} shards to {result.out} "
        f"(manifest {result.manifest.name}): {result.images} images{done}{failed} in "
        f"{result.seconds:.1f} s ({result.images_per_s:.1f} images/s) on Ray {result.address} "
        f"with {result.pool_size} model actors",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if result.partial:
        echo_err(
            f"facekp: {len(result.failed)} of {result.images} files could not be read "
            f"(listed in {result.manifest})"
        )
        raise typer.Exit(int(ExitCode.PARTIAL))

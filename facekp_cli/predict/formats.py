"""What an `--out` name means for predictions: one rule for images and video, in one place.

- `-` is standard output (its format: --format, else infer.format).
- A name with a predictions suffix (.json, .jsonl/.ndjson, .csv) is written in that format; a
  --format that says otherwise is an error, never a silent choice of one over the other.
- Any other suffix (v.webm, preds.txt) is an error: the name would lie about the contents.
  The annotated video of `infer VIDEO` is `--draw`, not `--out`.
- A name without a suffix takes --format, else infer.format.
"""

from __future__ import annotations

from pathlib import Path

from facekp_cli.errors import UsageError

STDOUT = "-"
SUFFIX_FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
IMAGE_FORMATS = ("json", "jsonl", "csv")
VIDEO_FORMATS = ("jsonl", "csv")  # a video is streamed frame by frame: no whole-file JSON


def is_stdout(out: str | Path | None) -> bool:
    return out is not None and str(out) == STDOUT


def output_format(out: str | Path, explicit: str | None, default: str, *, video: bool = False) -> str:
    """The predictions format `out` is written in; a UsageError when the name and the format disagree."""
    allowed = VIDEO_FORMATS if video else IMAGE_FORMATS
    what = "a video's predictions" if video else "predictions"
    names = " or ".join(f".{f}" for f in allowed)
    if explicit is not None and explicit not in allowed:
        hint = " (JSON Lines, one frame per line)" if video and explicit == "json" else ""
        raise UsageError(f"--format {explicit}: {what} are written as {', '.join(allowed)}{hint}")
    suffix = "" if is_stdout(out) else Path(out).suffix.lower()
    if not suffix:
        fmt = explicit or default
        if video and fmt == "json" and explicit is None:
            fmt = "jsonl"  # the settings' default, json, means JSON Lines for a stream of frames
        if fmt not in allowed:
            raise UsageError(f"infer.format = {fmt!r}: {what} are written as {', '.join(allowed)}")
        return fmt
    fmt = SUFFIX_FORMATS.get(suffix)
    if fmt is None:
        from facekp_cli.media import VIDEO_EXTENSIONS

        draw = " (the annotated video is --draw FILE)" if suffix in VIDEO_EXTENSIONS else ""
        raise UsageError(f"{out}: '{suffix}' is not a predictions format; name it {names}{draw}")
    if fmt not in allowed:
        raise UsageError(f"{out}: {what} are JSON Lines or CSV, not one JSON document; name it {names}")
    if explicit is not None and explicit != fmt:
        raise UsageError(f"{out}: --format {explicit} but the name says {fmt}; drop --format or rename it")
    return fmt

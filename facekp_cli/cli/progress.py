"""Progress for every verb: rich bars on a terminal, plain lines a log file can hold, nothing with --quiet.

A bar redraws one line in place, so a redirected stream (`> train.log`, `| tee`, CI, a SLURM output
file) would hold nothing until the end. Where the progress would go is chosen once per run
(`progress_stream`): stderr when it is not a terminal, else stdout when that is not a terminal and
carries no data (`-o -`, `--json`); when both are terminals, the bars. Plain lines come every
~10 % of a loop or every 30 s, whichever is first; training prints one line per epoch.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import typer

LINE_EVERY_FRACTION = 0.10
LINE_EVERY_SECONDS = 30.0


def progress_stream(ctx: typer.Context, stdout_is_data: bool = False) -> TextIO | None:
    """The stream for plain progress lines, or None: bars (both streams are terminals) or --quiet."""
    from facekp_cli.cli.context import state

    if state(ctx).quiet:
        return None
    if not _isatty(sys.stderr):
        return sys.stderr
    if not stdout_is_data and not _isatty(sys.stdout):
        return sys.stdout
    return None


def bars_wanted(ctx: typer.Context, stdout_is_data: bool = False) -> bool:
    from facekp_cli.cli.context import state

    return not state(ctx).quiet and progress_stream(ctx, stdout_is_data) is None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def say(stream: TextIO | None, verb: str, message: str) -> None:
    """One plain line, flushed at once (a log is read while the run goes on)."""
    if stream is None:
        return
    stream.write(f"facekp {verb}: {message}\n")
    stream.flush()


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class LineProgress:
    """A loop's progress as plain lines: `facekp infer: 120/1000 images (12%), 40.1 images/s, ETA 22.0 s`.

    A line when another ~10 % is done or 30 s have passed since the last one, and one at the end.
    """

    def __init__(self, stream: TextIO | None, verb: str, unit: str = "images") -> None:
        self.stream, self.verb, self.unit = stream, verb, unit
        self.total = 0
        self.done = 0
        self.started = self.last_time = time.monotonic()
        self.next_mark = 0.0

    def start(self, total: int | None) -> None:
        """total None: not known (a camera); then a line every 30 s only."""
        self.total, self.done = total or 0, 0
        self.started = self.last_time = time.monotonic()
        self.next_mark = LINE_EVERY_FRACTION * self.total if self.total else float("inf")
        say(self.stream, self.verb, f"{total} {self.unit} to do" if total else f"started ({self.unit})")

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self.total and self.done >= self.total:
            return  # finish() prints the last line
        if self.done >= self.next_mark or now - self.last_time >= LINE_EVERY_SECONDS:
            self._line(now)
            while self.next_mark <= self.done:
                self.next_mark += LINE_EVERY_FRACTION * self.total

    def finish(self) -> None:
        if self.total or self.done:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        self.last_time = now
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        share = (
            f"/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
            if self.total
            else f" {self.unit}"
        )
        eta = ""
        if rate > 0 and self.total > self.done:
            eta = f", ETA {duration((self.total - self.done) / rate)}"
        say(
            self.stream,
            self.verb,
            f"{self.done}{share}, {rate:.1f} {self.unit}/s, {duration(elapsed)} elapsed{eta}",
        )


def progress_bar(console, hidden: bool, unit: str = "images"):
    """The rich bar of infer (images), video infer (frames) and the other loops on a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TimeElapsedColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            elapsed = task.finished_time or task.elapsed
            return Text(f"{task.completed / elapsed:.1f} {unit}/s" if elapsed else f"- {unit}/s")

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=hidden,
        transient=False,
    )


class LoopProgress:
    """One loop's progress whatever the output: a rich bar, plain lines, or nothing.

    `note(text)` prints a message (e.g. a skipped file) above the bar or as its own line.
    """

    def __init__(
        self,
        ctx: typer.Context,
        verb: str,
        unit: str = "images",
        stdout_is_data: bool = False,
        no_bar: bool = False,
    ) -> None:
        from facekp_cli.cli.context import make_console, state

        self.verb = verb
        self.stream = progress_stream(ctx, stdout_is_data)
        self.lines = LineProgress(self.stream, verb, unit) if self.stream is not None else None
        self.console = make_console(ctx, stderr=True)
        hidden = state(ctx).quiet or no_bar or self.lines is not None
        self.bar = progress_bar(self.console, hidden=hidden, unit=unit)
        self.task = None

    def start(self, total: int | None) -> None:
        if self.lines is not None:
            self.lines.start(total)
            return
        self.bar.start()
        self.task = self.bar.add_task(self.verb, total=total)

    def advance(self, count: int = 1) -> None:
        if self.lines is not None:
            self.lines.advance(count)
        elif self.task is not None:
            self.bar.advance(self.task, count)

    def note(self, text: str) -> None:
        """A message line on stderr, shown even with --quiet (a skipped file is not progress)."""
        # soft_wrap: one line per message however long the path, so logs can be grepped
        self.bar.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.lines is not None:
            self.lines.finish()
        elif self.task is not None:  # a Progress that never started still prints a blank line on stop()
            self.bar.stop()


def epoch_lines_callback(stream: TextIO, verb: str = "train", prefix: str = ""):
    """A Lightning callback: one plain line per epoch with train loss, val NME/MSE100, epoch time, ETA."""
    from lightning.pytorch.callbacks import Callback

    class EpochLines(Callback):
        def __init__(self) -> None:
            self.epoch_started = 0.0
            self.run_started: float | None = None
            self.epochs_here = 0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.epoch_started = time.monotonic()
            if self.run_started is None:
                self.run_started = self.epoch_started

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            # Lightning runs validation before this hook, so val_* are this epoch's values.
            if trainer.sanity_checking or not trainer.is_global_zero:
                return
            self.epochs_here += 1
            metrics = trainer.callback_metrics
            seconds = time.monotonic() - self.epoch_started
            epoch, last = trainer.current_epoch + 1, trainer.max_epochs
            parts = [f"{prefix}epoch {epoch}/{last}"]
            for key, label, spec in (
                ("train_loss", "train loss", "{:.4g}"),
                ("val_nme", "val NME", "{:.3f}%"),
                ("val_mse100", "val MSE100", "{:.4g}"),
            ):
                if key in metrics:
                    parts.append(f"{label} {spec.format(float(metrics[key]))}")
            parts.append(f"{duration(seconds)}")
            if last is not None and last > epoch and self.run_started is not None:
                per_epoch = (time.monotonic() - self.run_started) / self.epochs_here
                parts.append(f"ETA {duration(per_epoch * (last - epoch))}")
            say(stream, verb, ", ".join(parts))

    return EpochLines()

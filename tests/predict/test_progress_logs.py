"""Progress a log file can hold: the verbs run as real processes with stdout and stderr piped (as under
`> train.log`, `| tee`, CI or SLURM) print plain progress lines; `--quiet` silences them; a terminal
(a pseudo-terminal here) keeps the rich bar and gets no plain lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

FACEKP = str(Path(sys.executable).parent / "facekp")
TINY_TRAIN = {
    "data.num_workers": "0",
    "model.input_size": "32",
    "model.width": "8",
    "train.accelerator": "cpu",
    "train.devices": "1",
}


def facekp(*args, cwd: Path, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    """A real `facekp` process with both streams piped (not terminals)."""
    return subprocess.run(
        [FACEKP, *(str(a) for a in args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **env},
    )


def plain(text: str, verb: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"facekp {verb}: ")]


def sets(work: Path, **extra: str) -> list[str]:
    values = {**TINY_TRAIN, "train.out_dir": str(work / "runs"), "train.best_path": str(work / "best.ckpt")}
    values.update(extra)
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def test_data_synth_prints_a_line_every_tenth(tmp_path):
    done = facekp("data", "synth", "--n", "64", "--out", tmp_path / "d", "--workers", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = plain(done.stderr, "data synth")
    assert lines[0] == "facekp data synth: 64 images to do"
    assert lines[-1].startswith("facekp data synth: 64/64 images (100%)")
    # chunks of 16 images: every chunk crosses another tenth, so 4 progress lines after the first
    assert [re.match(r"facekp data synth: (\d+)/64", line).group(1) for line in lines[1:]] == [
        "16",
        "32",
        "48",
        "64",
    ]
    assert all("images/s" in line for line in lines[1:]) and "ETA" in lines[1]
    assert "Wrote 48" not in done.stderr and "train" in done.stdout  # the summary stays on stdout


def test_train_prints_one_line_per_epoch_and_quiet_silences_it(tiny_dataset, tmp_path):
    args = [*sets(tmp_path), "train", "--data", tiny_dataset, "--epochs", "2", "--batch-size", "16"]
    done = facekp(*args, "--no-tracking", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = plain(done.stderr, "train")
    assert len(lines) == 2, done.stderr[-3000:]
    pattern = (
        r"facekp train: epoch (\d)/2, train loss [0-9.e-]+, val NME [0-9.]+%, val MSE100 [0-9.e+-]+, "
        r"[0-9.]+ s(, ETA [0-9.]+ s)?$"
    )
    matches = [re.match(pattern, line) for line in lines]
    assert all(matches), lines
    assert [m.group(1) for m in matches] == ["1", "2"]
    assert matches[0].group(2) and not matches[1].group(2)  # an ETA while epochs remain
    assert "Training done: 2 epochs" in done.stdout

    quiet = facekp("--quiet", *args, "--no-tracking", "--run-name", "q", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert not plain(quiet.stderr + quiet.stdout, "train")


def test_tune_prints_trial_and_epoch_lines(tiny_dataset, tmp_path):
    args = [*sets(tmp_path, **{"tune.storage": f"sqlite:///{tmp_path / 'optuna.db'}"}), "tune"]
    args += ["--data", tiny_dataset, "--epochs", "1", "--n-trials", "1", "--no-tracking"]
    args += ["--param", "train.lr=0.001..0.01:log", "--out", tmp_path / "best.toml"]
    done = facekp(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = plain(done.stderr, "tune")
    assert re.match(r"facekp tune: trial 0: epoch 1/1, train loss .*, val NME [0-9.]+%", lines[0]), lines
    assert re.match(r"facekp tune: trial 0 complete, val NME [0-9.]+% \(1 trials asked\)", lines[-1]), lines


def test_infer_eval_and_export_print_progress_lines(facekp_checkpoint, tiny_dataset, tmp_path):
    images = tiny_dataset / "train" / "images"
    count = len(list(images.iterdir()))
    done = facekp("infer", images, "--out", tmp_path / "p.json", "--ckpt", facekp_checkpoint, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = plain(done.stderr, "infer")
    assert lines[0] == f"facekp infer: {count} images to do"
    assert lines[-1].startswith(f"facekp infer: {count}/{count} images (100%)")
    shares = [int(re.search(r"\((\d+)%\)", line).group(1)) for line in lines[1:]]
    assert shares == sorted(shares) and len(shares) <= 11  # about one line per tenth, never more

    scored = facekp("eval", "--ckpt", facekp_checkpoint, "--data", tiny_dataset / "test", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    test_count = len(list((tiny_dataset / "test" / "images").iterdir()))
    assert plain(scored.stderr, "eval")[-1].startswith(f"facekp eval: {test_count}/{test_count} images")
    as_json = facekp(
        "eval", "--ckpt", facekp_checkpoint, "--data", tiny_dataset / "test", "--json", cwd=tmp_path
    )
    assert as_json.stdout.lstrip().startswith("{") and plain(as_json.stderr, "eval")  # stdout holds only data

    out = tmp_path / "m.onnx"
    exported = facekp(
        "export", "--ckpt", facekp_checkpoint, "--data", tiny_dataset, "--out", out, cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    steps = plain(exported.stderr, "export")
    assert any(line.startswith("facekp export: exporting") and "to onnx" in line for line in steps), steps
    assert any("verifying the onnx export against PyTorch" in line for line in steps), steps

    quiet = facekp("--quiet", "infer", images, "--out", tmp_path / "q.json", "--ckpt", facekp_checkpoint,
                   cwd=tmp_path)  # fmt: skip
    assert quiet.returncode == 0 and not plain(quiet.stderr + quiet.stdout, "infer")


def test_stdout_to_a_file_gets_the_lines_when_stderr_is_a_terminal(facekp_checkpoint, tiny_dataset, tmp_path):
    """`facekp infer ... > infer.log` at a terminal: the log holds the progress, not only the summary."""
    import pty

    images = tiny_dataset / "test" / "images"
    _, terminal = pty.openpty()
    log = tmp_path / "infer.log"
    with open(log, "w") as fh:
        done = subprocess.run(
            [
                FACEKP,
                "infer",
                str(images),
                "--out",
                str(tmp_path / "p.json"),
                "--ckpt",
                str(facekp_checkpoint),
            ],
            stdout=fh,
            stderr=terminal,
            cwd=tmp_path,
            timeout=300,
        )
    os.close(terminal)
    assert done.returncode == 0
    lines = plain(log.read_text(), "infer")
    assert lines and "(100%)" in lines[-1]


def test_a_terminal_keeps_the_bar_and_gets_no_plain_lines(facekp_checkpoint, tiny_dataset, tmp_path):
    import pty

    images = tiny_dataset / "test" / "images"
    main, terminal = pty.openpty()
    process = subprocess.Popen(
        [FACEKP, "infer", images, "--out", tmp_path / "p.json", "--ckpt", facekp_checkpoint],
        stdout=terminal,
        stderr=terminal,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=300) == 0
    os.close(main)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "facekp infer:" not in screen
    assert "images/s" in screen and "\x1b[" in screen  # the rich bar's rate column, drawn in place
    assert "wrote" in screen


@pytest.mark.parametrize("total", [100, 7])
def test_line_progress_prints_about_every_tenth(total, monkeypatch):
    import io

    from facekp_cli.cli import progress

    clock = iter(float(i) for i in range(10_000))
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    lines = progress.LineProgress(stream, "infer")
    lines.start(total)
    for _ in range(total):
        lines.advance()
    lines.finish()
    printed = stream.getvalue().splitlines()
    assert printed[0] == f"facekp infer: {total} images to do"
    assert printed[-1].startswith(f"facekp infer: {total}/{total} images (100%)")
    # one clock tick per image: 100 images -> 10 lines (10 %, 20 %, ... 100 %); 7 -> one per image
    assert len(printed) - 1 == min(total, 10)


def test_line_progress_prints_every_30_seconds_in_a_slow_loop(monkeypatch):
    import io

    from facekp_cli.cli import progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    lines = progress.LineProgress(stream, "infer")
    lines.start(10_000)
    for _ in range(50):  # 50 images, 2 s each: far from the first tenth, 100 s in all
        now[0] += 2.0
        lines.advance()
    printed = stream.getvalue().splitlines()[1:]
    assert len(printed) == 3  # at 30 s, 60 s and 90 s
    assert printed[0].startswith("facekp infer: 15/10000 images (0%), 0.5 images/s, 30.0 s elapsed, ETA 5h")

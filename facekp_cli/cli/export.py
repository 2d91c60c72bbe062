"""`facekp export`: ONNX or TorchScript from a checkpoint, verified against PyTorch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import typer

from facekp_cli.cli.context import build_settings, ckpt_option, echo_err, make_console

app = typer.Typer(help="Export a checkpoint to ONNX or TorchScript, verified against PyTorch.")


@app.callback(invoke_without_command=True)
def export(
    ctx: typer.Context,
    ckpt: Path | None = ckpt_option(),
    fmt: Literal["onnx", "torchscript"] | None = typer.Option(
        None, "--format", "-f", help="onnx or torchscript (export.format)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output file (default: beside the checkpoint)."
    ),
    opset: int | None = typer.Option(None, "--opset", help="ONNX opset (export.opset)."),
    quantize: Literal["int8"] | None = typer.Option(
        None,
        "--quantize",
        help="int8: onnxruntime static quantization, judged on images it was not calibrated on.",
    ),
    verify: bool | None = typer.Option(
        None, "--verify/--no-verify", help="Compare with PyTorch on dataset images (export.verify)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="Labelled split (or dataset root) for verification (default: data.root/test)."
    ),
    register: str | None = typer.Option(
        None, "--register", help="Log an MLflow Model (pyfunc) and register it as a version of NAME."
    ),
    alias: list[str] | None = typer.Option(
        None, "--alias", help="Point this registry alias (e.g. champion) at the new version; repeatable."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Export a checkpoint; exits non-zero when the export does not match PyTorch."""
    from facekp_cli.services import export as service

    settings = build_settings(ctx, **{"export.format": fmt, "export.opset": opset, "export.verify": verify})
    aliases = tuple(alias or ())
    from facekp_cli.cli.progress import progress_stream, say

    stream = progress_stream(ctx, stdout_is_data=as_json)
    started = time.monotonic()

    def on_step(text: str) -> None:
        say(stream, "export", f"{text} ({time.monotonic() - started:.1f} s)")

    result = service.run(
        settings, ckpt, out=out, data=data, quantize=quantize, register=register, aliases=aliases,
        on_step=on_step,
    )  # fmt: skip
    if result.registered and result.registered.get("pending"):  # the server did not answer: kept
        reg = result.registered
        echo_err(
            f"facekp: warning: MLflow at {reg['uri']} did not answer; the registration of '{reg['name']}' "
            f"is kept in {reg['pending']}, done later with: facekp tracking sync"
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    _render(make_console(ctx), result)


def _render(console, result) -> None:
    from rich.table import Table

    opset = f", opset {result.opset}" if result.opset else ""
    console.print(
        f"exported {result.checkpoint} -> {result.path} ({result.format}{opset}, "
        f"{result.size_bytes / 1e6:.1f} MB, sha256 {result.sha256[:12]}) in {result.seconds:.1f} s"
    )
    check = result.verification
    if check is None:
        console.print("verification skipped (--no-verify)")
    else:
        table = Table(title=f"verification on {check.images} images from {check.data}")
        for column in ("check", "value", "limit"):
            table.add_column(column)
        table.add_row("max point difference", f"{check.max_px:.5f} px", f"{check.tolerance_px} px")
        table.add_row("mean point difference", f"{check.mean_px:.5f} px", "")
        if check.nme_torch is None:
            table.add_row("NME", "n/a (unlabelled images)", "")
        else:
            table.add_row("NME torch / export", f"{check.nme_torch:.3f}% / {check.nme_export:.3f}%", "")
            table.add_row("NME change", f"{check.nme_change:+.4f} points", "")
        table.add_row("result", "passed" if check.passed else "FAILED", "")
        console.print(table)
    quant = result.quantization
    if quant is not None:
        table = Table(
            title=f"int8 quantization: {quant.method}; measured on {quant.heldout_images} other images "
            f"from {quant.data} (not used for calibration)"
        )
        for column in ("", "fp32", "int8"):
            table.add_column(column)
        table.add_row(
            "images/s (batch 32)", f"{quant.fp32_images_per_s:.1f}", f"{quant.int8_images_per_s:.1f}"
        )
        table.add_row("NME", f"{quant.fp32_nme:.3f}%", f"{quant.int8_nme:.3f}% ({quant.nme_change:+.3f})")
        table.add_row("size", f"{quant.fp32_bytes / 1e6:.2f} MB", f"{quant.int8_bytes / 1e6:.2f} MB")
        table.add_row("vs torch (max / mean px)", "", f"{quant.max_px:.3f} / {quant.mean_px:.3f}")
        console.print(table)
        console.print(
            f"int8 speed-up {quant.speedup:.2f}x; NME tolerance +{quant.tolerance_nme} points: "
            + ("passed" if quant.passed else "FAILED")
        )
    if result.registered and not result.registered.get("pending"):
        reg = result.registered
        aliases = f" (aliases: {', '.join(reg['aliases'])})" if reg.get("aliases") else ""
        console.print(
            f"registered as MLflow model '{reg['name']}' version {reg['version']}{aliases}: "
            f"mlflow.pyfunc.load_model('{reg['model_uri']}')"
        )

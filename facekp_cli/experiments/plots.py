"""The two pictures a training run logs to MLflow (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def lr_curve_png(steps: list[tuple[int, float]], folder: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([s for s, _ in steps], [lr for _, lr in steps])
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("learning rate")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path = folder / "lr_curve.png"
    figure.savefig(path)
    return path


def predictions_png(pl_module: Any, dataset: Any, folder: Path, count: int = 8) -> Path:
    """Predictions (red) against truth (green) on the first validation images, in the network frame."""
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = [dataset[i] for i in range(min(count, len(dataset)))]
    images = torch.stack([item["image"] for item in items]).to(pl_module.device)
    was_training = pl_module.model.training
    pl_module.model.eval()
    with torch.no_grad():
        pred = pl_module.model(images).float().cpu().numpy()
    pl_module.model.train(was_training)
    prep = dataset.prep
    figure = Figure(figsize=(2.2 * len(items), 2.4), dpi=100)
    FigureCanvasAgg(figure)
    for column, item in enumerate(items):
        axes = figure.add_subplot(1, len(items), column + 1)
        pixels = item["image"].numpy().transpose(1, 2, 0) * np.asarray(prep.std) + np.asarray(prep.mean)
        axes.imshow(np.clip(pixels.squeeze(), 0, 1), cmap="gray" if pixels.shape[2] == 1 else None)
        side = prep.input_size
        truth = (item["target"].numpy() + 1) / 2 * side
        mask = item["mask"].numpy()
        guess = (pred[column] + 1) / 2 * side
        axes.scatter(truth[mask, 0] - 0.5, truth[mask, 1] - 0.5, s=9, c="lime")
        axes.scatter(guess[:, 0] - 0.5, guess[:, 1] - 0.5, s=9, c="red", marker="x")
        axes.set_axis_off()
    figure.tight_layout()
    path = folder / "val_predictions.png"
    figure.savefig(path)
    return path

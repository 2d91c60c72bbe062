"""The LightningModule: wraps the plain ResNet18 as `self.model`, trains it, validates in original pixels."""

from __future__ import annotations

import dataclasses

import lightning as L
import numpy as np
import torch

from facekp_cli import metrics
from facekp_cli.errors import TrainingDiverged
from facekp_cli.frame import normalised_to_points
from facekp_cli.model.checkpoint import FACEKP_KEY, ModelMeta, build_network
from facekp_cli.model.ema import switch_step
from facekp_cli.model.losses import masked_loss
from facekp_cli.settings import Settings

VAL_METRICS = ("val_loss", "val_mse100", "val_nme", "val_fr10")


class KeypointModule(L.LightningModule):
    """`meta` is the checkpoint metadata known before training; epoch, metrics and the MLflow run
    id are filled in each time a checkpoint is saved."""

    def __init__(self, settings: Settings, meta: ModelMeta) -> None:
        super().__init__()
        self.settings = settings
        self.meta = meta
        self.model = build_network(meta, dropout=settings.model.dropout)
        self.mlflow_run_id: str | None = meta.mlflow_run_id
        self.prep = meta.preprocessing
        self._val_rows: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # The batched augmentation backend: the loader sent resized uint8 pixels; augment and
        # normalise the whole batch here, on whatever device trains.
        if isinstance(batch, dict) and "pixels" in batch:
            from facekp_cli.data.batch_augment import augment_batch, normalise, one_cpu_thread

            batch = dict(batch)
            pixels = batch.pop("pixels").float() / 255.0
            with one_cpu_thread(pixels.device):
                pixels, batch["target"], batch["mask"] = augment_batch(
                    pixels, batch["target"], batch["mask"], self.settings.augment
                )
            batch["image"] = normalise(pixels, self.prep)
        return batch

    def _loss(self, pred: torch.Tensor, batch: dict) -> torch.Tensor:
        m = self.settings.model
        return masked_loss(pred.float(), batch["target"], batch["mask"], m.loss, m.wing_w, m.wing_epsilon)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._loss(self.model(batch["image"]), batch)
        if not torch.isfinite(loss):  # stop before a NaN model is validated, saved or copied to best.ckpt
            t = self.settings.train
            raise TrainingDiverged(
                f"training diverged: the loss is {loss.item()} at epoch {self.current_epoch}, "
                f"batch {batch_idx} (train.lr={t.lr:g}); nothing was copied to {t.best_path}",
                hint="lower train.lr or train.grad_clip",
            )
        size = len(batch["image"])
        self.log(
            "train_loss", loss, on_epoch=True, on_step=False, prog_bar=True, sync_dist=True, batch_size=size
        )
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        pred = self.model(batch["image"]).float()
        self.log("val_loss", self._loss(pred, batch), on_epoch=True, sync_dist=True, batch_size=len(pred))
        # Metrics in original-image pixels (docs/DESIGN.md), not in the network's normalised frame.
        sizes = batch["size"].cpu().numpy().astype(np.float64)
        pred_px = normalised_to_points(pred.detach().cpu().numpy(), sizes[:, 0], sizes[:, 1])
        gt_px = batch["points"].cpu().numpy()
        index = batch["index"].cpu().numpy().astype(np.float64)
        rows = np.stack(
            [index, metrics.mse100_per_image(pred_px, gt_px, sizes), metrics.nme_per_image(pred_px, gt_px)],
            axis=1,
        )
        self._val_rows.append(torch.as_tensor(rows, dtype=torch.float64))

    def on_validation_epoch_end(self) -> None:
        if not self._val_rows:
            return
        rows = torch.cat(self._val_rows).to(self.device)
        self._val_rows.clear()
        rows = self.all_gather(rows).reshape(-1, 3).cpu().numpy()  # every rank's images
        # Under DDP the DistributedSampler pads the last round with repeats so every rank gets as
        # many images; each image must count once, as in `facekp eval` (issue 17).
        _, first = np.unique(rows[:, 0], return_index=True)
        rows = rows[np.sort(first), 1:]
        nme = rows[:, 1]
        with np.errstate(invalid="ignore"):
            values = {
                "val_mse100": float(np.nanmean(rows[:, 0]))
                if np.isfinite(rows[:, 0]).any()
                else float("nan"),
                "val_nme": float(np.nanmean(nme) * 100.0) if np.isfinite(nme).any() else float("nan"),
                "val_fr10": metrics.failure_rate(nme) * 100.0,  # percent, as everywhere
            }
        for name, value in values.items():
            # Every rank holds the same gathered value; sync_dist only keeps Lightning's bookkeeping quiet.
            self.log(name, value, prog_bar=name == "val_nme", batch_size=len(rows), sync_dist=True)

    def configure_optimizers(self):
        t = self.settings.train
        decay, no_decay = [], []
        for param in self.model.parameters():
            # Norm scales and biases are not weights to shrink.
            (no_decay if param.ndim <= 1 else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=t.lr,
        )
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        if t.schedule == "onecycle" and total_steps >= 2:
            # Warm up for a quarter of the run; tiny runs need at least one step on each side.
            pct_start = max(0.25, 1.5 / total_steps)
            scheduler = OneCycleThenHold(
                optimizer,
                max_lr=t.lr,
                total_steps=total_steps,
                pct_start=pct_start,
                hold_from=switch_step(t.swa_from, total_steps) if t.swa_lr > 0 else None,
                hold_lr=t.swa_lr * t.lr,
            )
        elif t.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def current_meta(self) -> ModelMeta:
        logged = self.trainer.callback_metrics if self._trainer is not None else {}
        values = {k: float(v) for k, v in logged.items() if k in VAL_METRICS}
        return dataclasses.replace(
            self.meta, epoch=self.current_epoch + 1, metrics=values, mlflow_run_id=self.mlflow_run_id
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[FACEKP_KEY] = self.current_meta().to_dict()


class OneCycleThenHold(torch.optim.lr_scheduler.OneCycleLR):
    """One-cycle, except that from step `hold_from` on (None: never) the rate stays at `hold_lr`.

    With `train.swa_lr` the averaged second half of a run walks at a constant rate instead of
    annealing to zero (SWA's constant phase; SWAD, Cha et al. 2021, for unseen domains). Before the
    hold the rates are OneCycleLR's own, bit for bit. The hold comes from the settings, not from a
    resumed checkpoint, so a resumed run may change it."""

    def __init__(self, optimizer, *, hold_from: int | None, hold_lr: float, **kwargs) -> None:
        self.hold_from, self.hold_lr = hold_from, hold_lr  # get_lr runs inside super().__init__
        super().__init__(optimizer, **kwargs)

    def get_lr(self):
        rates = super().get_lr()  # also cycles the momentum, as without the hold
        if self.hold_from is not None and self.last_epoch >= self.hold_from:
            return [self.hold_lr for _ in rates]
        return rates

    def load_state_dict(self, state_dict) -> None:
        hold = self.hold_from, self.hold_lr
        super().load_state_dict(state_dict)
        self.hold_from, self.hold_lr = hold

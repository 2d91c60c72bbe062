"""The batched augmentation backend: points follow the pixels through every transform, the flip
swaps identities, and its random draws match the albumentations recipe it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from train_helpers import AUGMENT_OFF as OFF
from train_helpers import augment_example

from facekp_cli.data.batch_augment import augment_batch, normalise
from facekp_cli.frame import Preprocessing, points_to_normalised, to_network_input
from facekp_cli.keypoints import FLIP_INDEX, NUM_KEYPOINTS
from facekp_cli.settings import AugmentSettings, Settings

SIDE = 64


def only(**kwargs) -> AugmentSettings:
    return AugmentSettings(**{**OFF, **kwargs})


def dots(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Black images, each with one small bright Gaussian dot; every point of an image sits on its dot."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.3, 0.7, (count, 2)) * SIDE  # pixels, our frame (corner origin)
    grid = np.arange(SIDE) + 0.5
    dx = grid[None, None, :] - centres[:, 0, None, None]
    dy = grid[None, :, None] - centres[:, 1, None, None]
    blob = np.exp(-(dx**2 + dy**2) / (2 * 1.2**2))
    pixels = torch.from_numpy(np.repeat(blob[:, None], 3, axis=1).astype(np.float32))
    target = torch.from_numpy(2 * centres / SIDE - 1).float()[:, None].repeat(1, NUM_KEYPOINTS, 1)
    return pixels, target


def found_dot(images: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centre of each image's dot, normalised frame."""
    weight = images.sum(dim=1).double()
    weight = torch.where(weight > 0.05 * weight.amax(dim=(1, 2), keepdim=True), weight, 0)
    grid = (torch.arange(SIDE, dtype=torch.float64) + 0.5) * 2 / SIDE - 1
    total = weight.sum(dim=(1, 2))
    x = (weight * grid[None, None, :]).sum(dim=(1, 2)) / total
    y = (weight * grid[None, :, None]).sum(dim=(1, 2)) / total
    return torch.stack([x, y], dim=1)


GEOMETRIC = {
    "flip": only(hflip_p=1.0),
    "rotate": only(affine_p=1.0, rotate_deg=30.0, scale=0.0, shift=0.0),
    "full_turn": only(affine_p=1.0, full_turn_p=1.0, scale=0.0, shift=0.0),
    "scale": only(affine_p=1.0, rotate_deg=0.0, scale=0.3, shift=0.0),
    "shift": only(affine_p=1.0, rotate_deg=0.0, scale=0.0, shift=0.1),
    "perspective": only(perspective_p=1.0, perspective_scale=0.1),
    "all": AugmentSettings(
        hflip_p=0.5, affine_p=1.0, perspective_p=1.0, color_p=0, blur_p=0, noise_p=0, gray_p=0
    ),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_points_follow_the_pixels_through_every_geometric_transform(name):
    torch.manual_seed(0)
    pixels, target = dots(64, seed=1)
    mask = torch.ones(target.shape[:2], dtype=torch.bool)

    images, moved, kept = augment_batch(pixels, target, mask, GEOMETRIC[name])

    assert kept.all()
    found = found_dot(images)
    # Every point of an image sat on its dot, so every point must land where the dot went.
    error_px = (moved.double() - found[:, None]).abs().amax() * SIDE / 2
    assert error_px < 0.25, f"{name}: points {error_px:.3f} px away from their pixels"
    assert (moved - target).abs().amax() > 0.02, f"{name}: nothing moved"


@pytest.mark.parametrize(
    "name,aug",
    [
        ("colour", only(color_p=1.0)),
        ("blur", only(blur_p=1.0)),
        ("noise", only(noise_p=1.0)),
        ("jpeg", only(jpeg_p=1.0, jpeg_quality_min=10)),
        ("grey", only(gray_p=1.0)),
        ("dropout", only(dropout_p=1.0)),
    ],
)
def test_photometric_steps_change_pixels_not_points(name, aug):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.uniform(0.2, 0.8, (8, 3, SIDE, SIDE)).astype(np.float32))
    _, target = dots(8, seed=2)
    mask = torch.ones(target.shape[:2], dtype=torch.bool)

    images, moved, kept = augment_batch(pixels, target, mask, aug)

    assert torch.equal(moved, target) and kept.all()
    assert images.shape == pixels.shape and images.min() >= 0 and images.max() <= 1
    assert (images - pixels).abs().mean() > 1e-3, f"{name} left the pixels unchanged"


def test_flip_mirrors_pixels_exactly_and_swaps_left_and_right():
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    pixels = torch.from_numpy(rng.uniform(0, 1, (4, 3, SIDE, SIDE)).astype(np.float32))
    target = torch.from_numpy(rng.uniform(-0.8, 0.8, (4, NUM_KEYPOINTS, 2)).astype(np.float32))
    mask = torch.ones(4, NUM_KEYPOINTS, dtype=torch.bool)
    mask[:, 2] = False  # right_eyebrow_inner unlabelled -> left_eyebrow_inner unlabelled after the flip
    target[:, 2] = 0

    images, moved, kept = augment_batch(pixels, target, mask, only(hflip_p=1.0))

    torch.testing.assert_close(images, pixels.flip(-1), atol=1e-5, rtol=0)
    for k in range(NUM_KEYPOINTS):
        source = FLIP_INDEX[k]
        assert bool(kept[0, k]) == bool(mask[0, source])
        if kept[0, k]:
            torch.testing.assert_close(moved[:, k, 0], -target[:, source, 0])
            torch.testing.assert_close(moved[:, k, 1], target[:, source, 1])
    assert not kept[:, FLIP_INDEX[2]].any() and kept.sum() == 4 * (NUM_KEYPOINTS - 1)


def test_points_beyond_keep_margin_leave_the_loss_and_the_rest_stay():
    aug = only(keep_margin=0.25)  # 0.25 of the side = 0.5 in the normalised frame
    target = torch.zeros(1, NUM_KEYPOINTS, 2)
    target[0, 0] = torch.tensor([1.49, 0.0])  # outside the frame, inside the margin
    target[0, 1] = torch.tensor([0.0, -1.51])  # beyond the margin
    mask = torch.ones(1, NUM_KEYPOINTS, dtype=torch.bool)
    mask[0, 2] = False

    _, moved, kept = augment_batch(torch.zeros(1, 3, SIDE, SIDE), target, mask, aug)

    assert kept[0, 0] and not kept[0, 1] and not kept[0, 2] and kept[0, 3:].all()
    assert moved[0, 1].abs().sum() == 0 and moved[0, 0, 0] == pytest.approx(1.49)


def test_without_augmentation_the_batch_equals_the_per_sample_network_input():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (3, SIDE, SIDE, 3), dtype=np.uint8)
    for channels in (3, 1):
        prep = Preprocessing.for_channels(SIDE, channels)
        pixels = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255
        target = torch.zeros(3, NUM_KEYPOINTS, 2)
        out, _, _ = augment_batch(pixels, target, torch.ones(3, NUM_KEYPOINTS, dtype=torch.bool), only())
        expected = np.stack([to_network_input(image, prep) for image in images])
        np.testing.assert_allclose(normalise(out, prep).numpy(), expected, atol=1e-4)


def _layout() -> np.ndarray:
    xs = np.linspace(0.25, 0.75, NUM_KEYPOINTS) * SIDE
    ys = (0.5 + 0.2 * np.sin(np.linspace(0, 6, NUM_KEYPOINTS))) * SIDE
    return np.stack([xs, ys], axis=1).astype(np.float32)


def _geometry_stats(points: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per sample: rotation and log-scale of the first-to-last point vector, centroid shift (x, y)."""
    a, b = points[:, -1] - points[:, 0], start[-1] - start[0]
    angle = np.arctan2(a[:, 1], a[:, 0]) - np.arctan2(b[1], b[0])
    angle = (angle + np.pi) % (2 * np.pi) - np.pi
    scale = np.log(np.linalg.norm(a, axis=1) / np.linalg.norm(b))
    shift = points.mean(axis=1) - start.mean(axis=0)
    return np.stack([np.abs(angle), scale, shift[:, 0], shift[:, 1]], axis=1)


def test_geometric_draws_match_the_albumentations_recipe():
    """The default recipe on both backends, 600 draws each: the distributions of the rotation, zoom
    and shift they apply to a face layout are the same (two-sample KS test per statistic).
    Perspective is left out on purpose (off by default): albumentations 2.0.8 rescales its warp
    about the top-left corner (keep_size), a zoom-in and a shift towards the bottom right that
    the batched backend does not copy."""
    aug = AugmentSettings(color_p=0, blur_p=0, noise_p=0, gray_p=0, keep_margin=10.0)
    settings = Settings(augment=aug)
    start = _layout()
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    count = 600
    reference = np.stack([augment_example(image, start, settings, seed=s)[1] for s in range(count)])

    torch.manual_seed(0)
    target = torch.from_numpy(points_to_normalised(start, SIDE, SIDE))[None].repeat(count, 1, 1)
    mask = torch.ones(count, NUM_KEYPOINTS, dtype=torch.bool)
    _, moved, _ = augment_batch(torch.zeros(count, 3, SIDE, SIDE), target, mask, aug)
    batched = (moved.numpy() + 1) / 2 * SIDE

    # Mirrored samples reverse the layout's order; compare un-mirrored ones by putting it back.
    def unflip(points: np.ndarray) -> np.ndarray:
        reversed_ = points[:, -1, 0] < points[:, 0, 0]
        out = points.copy()
        out[reversed_] = points[reversed_][:, list(FLIP_INDEX)]
        return out

    ours = _geometry_stats(unflip(batched), start)
    theirs = _geometry_stats(unflip(reference), start)
    for column, name in enumerate(["|rotation|", "log zoom"]):
        result = ks_2samp(ours[:, column], theirs[:, column])
        assert result.pvalue > 0.001, f"{name}: KS {result.statistic:.3f}, p={result.pvalue:.2g}"
    # albumentations 2.0.8 shifts by whole pixels (int(), so 0 is drawn 1.5x as often as its
    # neighbours) and, on this layout, narrower and off-centre than its settings say (x: mean
    # -0.7 px, spread 1.85 px where U(+-0.08 x 64 px) on 80 % of draws gives 2.65). Ours follows
    # the settings: its spread is the nominal one, within 1.5x of albumentations', centres within a pixel.
    nominal = aug.shift * SIDE / np.sqrt(3) * np.sqrt(aug.affine_p)
    for column, name in [(2, "shift x"), (3, "shift y")]:
        a, b = ours[:, column], theirs[:, column]
        assert abs(a.mean() - b.mean()) < 1.0, f"{name}: mean {a.mean():.2f} vs {b.mean():.2f} px"
        assert 0.9 < a.std() / nominal < 1.1, f"{name}: spread {a.std():.2f} px, nominal {nominal:.2f}"
        assert 0.67 < a.std() / b.std() < 1.5, f"{name}: spread {a.std():.2f} vs {b.std():.2f} px"
    # The flip share matches too.
    assert abs((batched[:, 0, 0] > SIDE / 2).mean() - (reference[:, 0, 0] > SIDE / 2).mean()) < 0.1


def test_photometric_draws_match_the_albumentations_recipe():
    """Brightness and contrast of a textured face-like image after each backend's photometric
    steps (colour jitter always on, blur/noise/grey at their defaults) are distributed alike."""
    aug = AugmentSettings(hflip_p=0, affine_p=0, perspective_p=0, color_p=1.0, blur_p=0.05, noise_p=0.05)
    settings = Settings(augment=aug)
    rng = np.random.default_rng(5)
    image = np.clip(rng.normal([150, 110, 90], 30, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    points = _layout()
    count = 500
    reference = np.stack([augment_example(image, points, settings, seed=s)[0] for s in range(count)])

    torch.manual_seed(0)
    pixels = torch.from_numpy(image.transpose(2, 0, 1).copy()).float().div(255)[None].repeat(count, 1, 1, 1)
    target = torch.from_numpy(points_to_normalised(points, SIDE, SIDE))[None].repeat(count, 1, 1)
    images, _, _ = augment_batch(pixels, target, torch.ones(count, NUM_KEYPOINTS, dtype=torch.bool), aug)
    ours = images.numpy().transpose(0, 2, 3, 1) * 255
    theirs = reference.astype(np.float64)

    for name, stat in [
        ("brightness", lambda x: x.mean(axis=(1, 2, 3))),
        ("contrast", lambda x: x.std(axis=(1, 2, 3))),
    ]:
        a, b = stat(ours), stat(theirs)
        result = ks_2samp(a, b)
        assert result.statistic < 0.12, (
            f"{name}: KS {result.statistic:.3f} (ours {a.mean():.1f}, theirs {b.mean():.1f})"
        )


def test_the_loader_sends_pixels_and_the_module_augments_them(tiny_settings):
    """backend "batched": training batches carry uint8 pixels and un-augmented targets; the
    LightningModule turns them into augmented network input (torch's thread count untouched).
    backend "albumentations": the loader sends finished network input, which the module passes on."""
    from facekp_cli.data.datamodule import KeypointDataModule
    from facekp_cli.model.lightning_module import KeypointModule
    from facekp_cli.services.train import _base_meta

    flip_only = {f"augment.{key}": value for key, value in {**OFF, "hflip_p": 1.0}.items()}
    settings = tiny_settings(**{"augment.backend": "batched", **flip_only})
    datamodule = KeypointDataModule(settings)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["pixels"].dtype == torch.uint8 and "image" not in batch
    module = KeypointModule(settings, _base_meta(settings, datamodule, None))
    threads = torch.get_num_threads()

    out = module.on_after_batch_transfer(batch, 0)

    assert torch.get_num_threads() == threads
    assert out["image"].shape == (len(batch["pixels"]), 3, 32, 32) and out["image"].dtype == torch.float32
    # Every sample was flipped: labelled targets mirrored (x -> -x) with identities swapped.
    order = list(FLIP_INDEX)
    mask = batch["mask"][:, order]
    torch.testing.assert_close(out["target"][..., 0][mask], -batch["target"][:, order, 0][mask])
    assert torch.equal(out["mask"], mask)

    settings = tiny_settings(**{"augment.backend": "albumentations"})
    batch = next(iter(KeypointDataModule(settings).train_dataloader()))
    assert "pixels" not in batch and batch["image"].dtype == torch.float32
    assert module.on_after_batch_transfer(batch, 0) is batch

"""Training augmentation as batched tensor ops on the training device (`augment.backend = "batched"`).

The same recipe as the albumentations pipeline (facekp_cli/data/augment.py, same settings, same
parameter ranges), applied to a whole batch at once so data-loader workers only index the
resized-image cache. Decisions, each tested in tests/train/test_batch_augment.py:

- Own torch ops, not kornia or torchvision v2: measured faster on CPU at 64-96 px (docs/bench/
  train.md), no new dependency, and the flip must swap point identities (keypoints.FLIP_INDEX),
  which neither library does.
- Geometry lives in the network's normalised frame, [-1, 1] per axis with -1 at the outer edge of
  the first pixel: exactly `grid_sample(align_corners=False)`'s frame and the frame of the training
  targets, so one 3x3 matrix per sample moves both pixels and points with no half-pixel bookkeeping.
  Flip, rotate/scale/shift and perspective compose into that one matrix: one resampling per image.
- Photometric steps (colour jitter, blur, noise, JPEG-like block quantisation, grey) run in [0, 1]
  RGB on the samples their coin flip chose, in albumentations' order.
- Points pushed farther than `augment.keep_margin` outside the frame leave the loss (mask False),
  as in the albumentations backend; unlabelled points stay unlabelled.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from facekp_cli.keypoints import FLIP_INDEX

if TYPE_CHECKING:
    from facekp_cli.frame import Preprocessing
    from facekp_cli.settings import AugmentSettings

_LUMA = (0.299, 0.587, 0.114)
# JPEG's standard luminance quantisation table (ITU-T T.81, Annex K), row-major.
_JPEG_LUMA_Q = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def _coin(n: int, p: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) < p


def geometric_matrices(
    aug: AugmentSettings, n: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 3) homographies mapping input to output normalised coordinates, and the flip coins."""
    eye = torch.eye(3, device=device).expand(n, 3, 3).clone()
    flip = _coin(n, aug.hflip_p, device)
    flip_m = eye.clone()
    flip_m[flip, 0, 0] = -1.0

    # Rotate/scale/shift about the centre, albumentations' A.Affine ranges; a `full_turn_p` share
    # draws its angle from the whole circle (A.OneOf in the albumentations recipe).
    warp = _coin(n, aug.affine_p, device)
    full = _coin(n, aug.full_turn_p, device)
    limit = torch.where(
        full, torch.full((n,), 180.0, device=device), torch.full((n,), aug.rotate_deg, device=device)
    )
    angle = (torch.rand(n, device=device) * 2 - 1) * limit * (math.pi / 180.0)
    scale = _uniform(n, 1.0 - aug.scale, 1.0 + aug.scale, device)
    # translate_percent is a fraction of the side; the normalised frame spans 2 per side.
    shift = _uniform(2 * n, -aug.shift, aug.shift, device).view(n, 2) * 2.0
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    affine = eye.clone()
    affine[:, 0, 0], affine[:, 0, 1], affine[:, 0, 2] = cos, -sin, shift[:, 0]
    affine[:, 1, 0], affine[:, 1, 1], affine[:, 1, 2] = sin, cos, shift[:, 1]
    affine = torch.where(warp[:, None, None], affine, eye)

    persp = eye
    chosen = _coin(n, aug.perspective_p, device)
    if bool(chosen.any()):
        persp = torch.where(
            chosen[:, None, None], perspective_matrices(aug.perspective_scale, n, device), eye
        )
    return persp @ affine @ flip_m, flip


def perspective_matrices(max_scale: float, n: int, device: torch.device) -> torch.Tensor:
    """A.Perspective's draw: each corner moves inward by |N(0, s)| of the side, s ~ U(0, max_scale);
    the homography maps the moved corners back onto the frame's corners (keep_size)."""
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=device)
    sigma = _uniform(n, 0.0, max_scale, device)
    offsets = (torch.randn(n, 4, 2, device=device) * sigma[:, None, None]).abs() * 2.0
    moved = corners - corners.sign() * offsets  # inward
    return homography(moved, corners.expand(n, 4, 2))


def homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) H with H @ src_i ~ dst_i for four point pairs per sample (direct linear transform)."""
    n = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], dim=-1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], dim=-1)
    a = torch.cat([rows_u, rows_v], dim=1)  # (n, 8, 8)
    b = torch.cat([u, v], dim=1)  # (n, 8)
    h = torch.linalg.solve(a.double(), b.double()).to(src.dtype)
    return torch.cat([h, torch.ones(n, 1, device=src.device, dtype=src.dtype)], dim=1).view(n, 3, 3)


def warp_images(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resample (n, C, S, S) so that input point p lands at matrices @ p (zeros outside the frame)."""
    n, _, height, width = images.shape
    ys = (torch.arange(height, device=images.device, dtype=images.dtype) + 0.5) * (2.0 / height) - 1.0
    xs = (torch.arange(width, device=images.device, dtype=images.dtype) + 0.5) * (2.0 / width) - 1.0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    out_points = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).view(1, -1, 3)
    inverse = torch.linalg.inv(matrices.double()).to(images.dtype)
    source = out_points @ inverse.transpose(1, 2)  # (n, H*W, 3)
    grid = (source[..., :2] / source[..., 2:3]).view(n, height, width, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def move_points(points: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """(n, K, 2) normalised points through (n, 3, 3) homographies."""
    ones = torch.ones_like(points[..., :1])
    moved = torch.cat([points, ones], dim=-1) @ matrices.transpose(1, 2)
    return moved[..., :2] / moved[..., 2:3]


def _gray(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def color_jitter(images: torch.Tensor, aug: AugmentSettings) -> torch.Tensor:
    """Brightness, contrast, saturation and hue factors from A.ColorJitter's ranges."""
    n, device = images.shape[0], images.device
    shape = (n, 1, 1, 1)
    brightness = _uniform(n, max(0.0, 1 - aug.brightness), 1 + aug.brightness, device).view(shape)
    contrast = _uniform(n, max(0.0, 1 - aug.contrast), 1 + aug.contrast, device).view(shape)
    saturation = _uniform(n, max(0.0, 1 - aug.saturation), 1 + aug.saturation, device).view(shape)
    hue = _uniform(n, -aug.hue, aug.hue, device) * (2 * math.pi)
    images = (images * brightness).clamp(0, 1)
    mean = _gray(images).mean(dim=(2, 3), keepdim=True)
    images = ((images - mean) * contrast + mean).clamp(0, 1)
    gray = _gray(images)
    images = ((images - gray) * saturation + gray).clamp(0, 1)
    return rotate_hue(images, hue).clamp(0, 1)


def rotate_hue(images: torch.Tensor, radians: torch.Tensor) -> torch.Tensor:
    """Hue shift as a rotation of the chroma plane in YIQ (keeps luma; cheap on any device)."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        device=images.device,
        dtype=images.dtype,
    )
    cos, sin = torch.cos(radians), torch.sin(radians)
    rotation = torch.zeros(len(radians), 3, 3, device=images.device, dtype=images.dtype)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (n, 3, 3)
    return torch.einsum("nij,njhw->nihw", matrix, images)


def gaussian_blur(images: torch.Tensor) -> torch.Tensor:
    """A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2)): odd kernel 3 or 5, per-sample sigma."""
    n, channels, height, width = images.shape
    device = images.device
    sigma = _uniform(n, 0.3, 1.2, device)
    radius = torch.where(_coin(n, 0.5, device), 1, 2)  # kernel 3 or 5
    taps = torch.arange(-2, 3, device=device, dtype=images.dtype)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = kernel * (taps[None].abs() <= radius[:, None])
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # (n*C, 5)
    flat = images.reshape(1, n * channels, height, width)
    flat = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="reflect"), kernel.view(-1, 1, 1, 5), groups=n * channels)
    flat = F.conv2d(F.pad(flat, (0, 0, 2, 2), mode="reflect"), kernel.view(-1, 1, 5, 1), groups=n * channels)
    return flat.view(n, channels, height, width)


def gauss_noise(images: torch.Tensor) -> torch.Tensor:
    """A.GaussNoise(std_range=(0.02, 0.08)): per-sample std, independent per pixel and channel."""
    std = _uniform(images.shape[0], 0.02, 0.08, images.device).view(-1, 1, 1, 1)
    return (images + torch.randn_like(images) * std).clamp(0, 1)


def _dct_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    k = torch.arange(8, device=device, dtype=dtype)
    basis = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    basis[0] /= math.sqrt(2)
    return basis


def jpeg_like(images: torch.Tensor, quality_low: int, quality_high: int) -> torch.Tensor:
    """JPEG's loss without the codec: 8x8 block DCT of each channel, quantised with the standard
    luminance table at a per-sample quality (libjpeg's scaling). No chroma subsampling."""
    n, channels, height, width = images.shape
    device, dtype = images.device, images.dtype
    pad_h, pad_w = (-height) % 8, (-width) % 8
    padded = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") * 255.0 - 128.0
    ph, pw = padded.shape[2:]
    blocks = padded.view(n, channels, ph // 8, 8, pw // 8, 8).permute(0, 1, 2, 4, 3, 5)
    basis = _dct_matrix(device, dtype)
    coeffs = basis @ blocks @ basis.T
    quality = torch.randint(quality_low, quality_high + 1, (n,), device=device).to(dtype)
    scale = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality) / 100.0
    table = torch.tensor(_JPEG_LUMA_Q, device=device, dtype=dtype)
    step = (table[None] * scale.view(n, 1, 1)).clamp(min=1.0).view(n, 1, 1, 1, 8, 8)
    restored = basis.T @ (torch.round(coeffs / step) * step) @ basis
    out = restored.permute(0, 1, 2, 4, 3, 5).reshape(n, channels, ph, pw)[:, :, :height, :width]
    return ((out + 128.0) / 255.0).clamp(0, 1)


def coarse_dropout(images: torch.Tensor, aug: AugmentSettings) -> torch.Tensor:
    """A.CoarseDropout: 1-3 black rectangles per image, sides a fraction of the image."""
    n, _, height, width = images.shape
    device = images.device
    low = min(0.05, aug.dropout_size)
    holes = torch.randint(1, 4, (n,), device=device)
    size = _uniform(n * 3 * 2, low, aug.dropout_size, device).view(n, 3, 2)
    corner = torch.rand(n, 3, 2, device=device) * (1 - size)
    ys = (torch.arange(height, device=device) + 0.5) / height
    xs = (torch.arange(width, device=device) + 0.5) / width
    inside_x = (xs[None, None] >= corner[..., :1]) & (xs[None, None] < corner[..., :1] + size[..., :1])
    inside_y = (ys[None, None] >= corner[..., 1:]) & (ys[None, None] < corner[..., 1:] + size[..., 1:])
    used = torch.arange(3, device=device)[None] < holes[:, None]  # (n, 3)
    covered = (inside_y[..., :, None] & inside_x[..., None, :] & used[..., None, None]).any(dim=1)
    return images * (~covered)[:, None].to(images.dtype)


def _on_some(images: torch.Tensor, p: float, step) -> torch.Tensor:
    """Apply `step` to the samples a coin with probability p chose (only those are computed)."""
    chosen = torch.nonzero(_coin(images.shape[0], p, images.device)).flatten()
    if p <= 0 or chosen.numel() == 0:
        return images
    images = images.clone()
    images[chosen] = step(images[chosen])
    return images


def augment_batch(
    pixels: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, aug: AugmentSettings
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment a batch: pixels (n, 3, S, S) float in [0, 1], target (n, K, 2) normalised, mask (n, K).
    Returns new pixels, targets (0 where masked) and mask; draws from torch's generator on the device."""
    n = pixels.shape[0]
    matrices, flip = geometric_matrices(aug, n, pixels.device)
    images = warp_images(pixels, matrices)
    # A flipped left eye is the right eye: flipped samples take their points in FLIP_INDEX order.
    order = torch.tensor(FLIP_INDEX, device=pixels.device)
    target = torch.where(flip[:, None, None], target[:, order], target)
    mask = torch.where(flip[:, None], mask[:, order], mask)
    moved = move_points(target, matrices)
    limit = 1.0 + 2.0 * aug.keep_margin
    mask = mask & torch.isfinite(moved).all(dim=-1) & (moved.abs() <= limit).all(dim=-1)
    target = torch.where(mask[..., None], moved, torch.zeros_like(moved))

    images = _on_some(images, aug.dropout_p, lambda x: coarse_dropout(x, aug))
    images = _on_some(images, aug.color_p, lambda x: color_jitter(x, aug))
    images = _on_some(images, aug.blur_p, gaussian_blur)
    images = _on_some(images, aug.noise_p, gauss_noise)
    images = _on_some(images, aug.jpeg_p, lambda x: jpeg_like(x, aug.jpeg_quality_min, 95))
    images = _on_some(images, aug.gray_p, lambda x: _gray(x).expand(-1, 3, -1, -1))
    return images, target, mask


@contextlib.contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """On CPU, run the batch's many small ops on one torch thread: split over threads they cost
    more CPU than they save (10x more on the 2 shared cores at load 30-40, docs/bench/train.md)."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def normalise(pixels: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """[0, 1] RGB (n, 3, S, S) -> network input, as frame.to_network_input does for one image."""
    if prep.in_channels == 1:
        pixels = _gray(pixels)
    mean = torch.tensor(prep.mean, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
    std = torch.tensor(prep.std, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
    return (pixels - mean) / std

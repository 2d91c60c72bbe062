"""ResNet18 written from layers (no torchvision) with two heads for 14 points in [-1, 1] per axis.

- "regression": global pooling and a linear layer, 28 numbers (direct regression).
- "integral": a small feature pyramid down to stride 8, one heatmap per point and its soft-argmax
  (integral regression, Sun et al. 2018), plus a pooled linear residual (zero at start) so that
  points outside the frame, which a soft-argmax over the image cannot reach, stay reachable.

With `flip_test`, inference (eval mode) averages the prediction with that of the mirrored image,
mirrored back with left and right swapped: inside the network, so ONNX and TorchScript exports
carry it too.
"""

from __future__ import annotations

import torch
from torch import nn

from facekp_cli.keypoints import NUM_KEYPOINTS


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class IntegralHead(nn.Module):
    """Stages 2-4 merged top-down at stride 8 -> K heatmaps -> expected (x, y) in [-1, 1]."""

    def __init__(self, channels: list[int], num_keypoints: int) -> None:
        super().__init__()
        inner = channels[1]
        self.lateral = nn.ModuleList(nn.Conv2d(c, inner, 1, bias=False) for c in channels[1:])
        self.smooth = nn.Sequential(
            nn.Conv2d(inner, inner, 3, padding=1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True)
        )
        self.heatmaps = nn.Conv2d(inner, num_keypoints, 1)

    def forward(self, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor) -> torch.Tensor:
        top = self.lateral[2](c4)
        for lateral, feature in ((self.lateral[1], c3), (self.lateral[0], c2)):
            top = nn.functional.interpolate(top, size=feature.shape[-2:], mode="nearest") + lateral(feature)
        logits = self.heatmaps(self.smooth(top))
        batch, points, height, width = logits.shape
        probs = torch.softmax(logits.flatten(2).float(), dim=-1).view(batch, points, height, width)
        # Cell centres in the [-1, 1] frame whose edges are the image's edges.
        xs = (torch.arange(width, device=logits.device, dtype=probs.dtype) + 0.5) * (2.0 / width) - 1.0
        ys = (torch.arange(height, device=logits.device, dtype=probs.dtype) + 0.5) * (2.0 / height) - 1.0
        x = (probs.sum(dim=2) * xs).sum(dim=-1)
        y = (probs.sum(dim=3) * ys).sum(dim=-1)
        return torch.stack([x, y], dim=-1)


HEADS = ("regression", "integral")


class ResNet18(nn.Module):
    """Stem, four stages of two basic blocks ([2, 2, 2, 2]), then a regression or integral head."""

    def __init__(
        self,
        in_channels: int = 3,
        num_keypoints: int = NUM_KEYPOINTS,
        width: int = 64,
        dropout: float = 0.0,
        head: str = "regression",
        flip_index: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
        self.num_keypoints = num_keypoints
        self.head_kind = head
        # Test-time flip averaging needs the left/right pairing; None turns it off.
        self.flip_test = flip_index is not None
        self.register_buffer(
            "flip_index", torch.tensor(flip_index or range(num_keypoints), dtype=torch.long), persistent=False
        )
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        channels = [width, width * 2, width * 4, width * 8]
        stages, previous = [], width
        for index, out_channels in enumerate(channels):
            stride = 1 if index == 0 else 2
            stages.append(
                nn.Sequential(
                    BasicBlock(previous, out_channels, stride), BasicBlock(out_channels, out_channels)
                )
            )
            previous = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(previous, num_keypoints * 2)
        self.integral = IntegralHead(channels, num_keypoints) if head == "integral" else None
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Zero-init the last BN of each block so every block starts as identity (Goyal et al.).
        for module in self.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)
        nn.init.zeros_(self.head.bias)
        nn.init.normal_(self.head.weight, std=1e-3)
        if self.integral is not None:  # uniform heatmaps: every point starts at the centre
            nn.init.zeros_(self.integral.heatmaps.weight)
            nn.init.zeros_(self.integral.heatmaps.bias)

    def points(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, K, 2) points in [-1, 1] per axis, one pass."""
        c2 = self.layer2(self.layer1(self.stem(x)))
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        pooled = self.dropout(torch.flatten(self.pool(c4), 1))
        out = self.head(pooled).view(-1, self.num_keypoints, 2)
        if self.integral is not None:
            out = out + self.integral(c2, c3, c4).to(out.dtype)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, K, 2) points in [-1, 1] per axis."""
        out = self.points(x)
        if self.flip_test and not self.training:
            # Mirroring the image maps x to -x in the [-1, 1] frame and swaps left and right.
            mirrored = self.points(torch.flip(x, dims=[3]))[:, self.flip_index]
            out = 0.5 * (out + mirrored * torch.tensor([-1.0, 1.0], dtype=out.dtype, device=out.device))
        return out

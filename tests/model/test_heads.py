"""The network's heads and test-time flip averaging, checked on real tensors."""

from __future__ import annotations

import pytest
import torch

from facekp_cli.keypoints import FLIP_INDEX
from facekp_cli.model.resnet import HEADS, ResNet18


def mirrored(points: torch.Tensor) -> torch.Tensor:
    """Points of the mirrored image: x -> -x in the [-1, 1] frame, left and right swapped."""
    return points[:, list(FLIP_INDEX)] * torch.tensor([-1.0, 1.0])


@pytest.mark.parametrize("head", HEADS)
def test_flip_test_makes_the_prediction_mirror_equivariant(head):
    torch.manual_seed(0)
    model = ResNet18(3, 14, width=8, head=head, flip_index=FLIP_INDEX).eval()
    for parameter in model.parameters():  # away from the near-zero initial head
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    images = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        straight, flipped = model(images), model(torch.flip(images, dims=[3]))
    assert straight.shape == (3, 14, 2)
    assert torch.allclose(flipped, mirrored(straight), atol=1e-5)
    plain = ResNet18(3, 14, width=8, head=head).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        one_pass = plain(images)
    assert not torch.allclose(plain(torch.flip(images, dims=[3])), mirrored(one_pass), atol=1e-3)


def test_flip_test_is_off_while_training():
    torch.manual_seed(0)
    model = ResNet18(3, 14, width=8, flip_index=FLIP_INDEX)
    plain = ResNet18(3, 14, width=8)
    plain.load_state_dict(model.state_dict())
    model.eval(), plain.eval()
    for module in (model, plain):  # BatchNorm in eval for both; only the flag differs
        module.training = True
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(images), plain(images))


def test_integral_head_starts_at_the_centre_and_learns_points_outside_the_frame():
    """The soft-argmax alone cannot leave the image; its residual lets targets outside be learned."""
    torch.manual_seed(0)
    model = ResNet18(3, 14, width=8, head="integral")
    image = torch.randn(2, 3, 64, 64)  # two: BatchNorm needs more than one value per channel
    with torch.no_grad():
        start = model.eval()(image)
    assert start.abs().max() < 0.2  # near-uniform heatmaps: about the centre
    target = torch.zeros(2, 14, 2)
    target[:, 12] = torch.tensor([0.2, -1.3])  # mouth centre above the top edge (upside-down face)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        optimizer.zero_grad()
        loss = torch.nn.functional.l1_loss(model(image), target)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        reached = model.eval()(image)[0, 12]
    assert reached[1] < -1.1, reached


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="unknown head 'nope'"):
        ResNet18(head="nope")

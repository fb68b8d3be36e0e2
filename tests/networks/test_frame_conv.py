"""The residual frame convolutions of the text-to-speech networks."""

from __future__ import annotations

import pytest
import torch

from resgen.networks.frame_conv import FrameConvStack


def _stack(layers: int = 2, kernel: int = 5) -> FrameConvStack:
    torch.manual_seed(0)
    return FrameConvStack(8, layers, kernel).eval()


def test_shape_and_padding_never_reaches_real_frames() -> None:
    stack = _stack()
    x = torch.randn(2, 10, 8)
    padding = torch.zeros(2, 10, dtype=torch.bool)
    padding[1, 6:] = True
    out = stack(x, padding)
    assert out.shape == x.shape
    assert bool((out[1, 6:] == 0).all())
    garbage = x.clone()
    garbage[1, 6:] = 1e3
    assert torch.allclose(stack(garbage, padding), out)
    # a padded row gives its real frames what the row alone gives them
    assert torch.allclose(stack(x[1:, :6])[0], out[1, :6], atol=1e-6)


def test_receptive_field_is_layers_times_half_kernel() -> None:
    stack = _stack(layers=2, kernel=5)  # reach 2 * 2 = 4 frames each way
    x = torch.randn(1, 20, 8)
    moved = x.clone()
    moved[0, 10] += torch.randn(8)  # not a constant: LayerNorm would remove it
    changed = (stack(moved) - stack(x)).abs().sum(-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == list(range(6, 15))


@pytest.mark.parametrize("layers, kernel", [(0, 5), (2, 4), (2, 0)])
def test_bad_sizes_are_clear_errors(layers: int, kernel: int) -> None:
    with pytest.raises(ValueError, match="layers|kernel"):
        FrameConvStack(8, layers, kernel)

"""The jaxtyping import hook from conftest.py really checks annotations."""

import pytest
import torch

from resgen.diffusion.masking import depth_mask


def test_import_hook_rejects_wrong_dtype() -> None:
    # depth_mask itself never looks at the dtype: only the annotation check can refuse floats.
    with pytest.raises(Exception, match="(?i)type|dtype"):
        depth_mask(torch.zeros(2, 3), 4)


def test_import_hook_accepts_right_input() -> None:
    assert depth_mask(torch.zeros(2, 3, dtype=torch.long), 4).shape == (2, 3, 4)

"""Class conditioning with a null label, for classifier-free guidance."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from resgen.typing import Labels

__all__ = ["ClassEmbedding"]


class ClassEmbedding(nn.Module):
    """Embeds class labels; label ``num_classes`` is the null (unconditional) label.

    In training mode each label is replaced by the null label with probability ``dropout``, so that
    one network learns both the conditional and the unconditional model (classifier-free guidance).

    Args:
        num_classes: number of real classes.
        width: embedding width.
        dropout: probability of dropping a label to the null label during training.
    """

    def __init__(self, num_classes: int, width: int, dropout: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.num_classes = num_classes
        self.dropout = dropout
        self.table = nn.Embedding(num_classes + 1, width)

    @property
    def null_label(self) -> int:
        """The index of the unconditional label."""
        return self.num_classes

    def forward(
        self, labels: Labels, generator: torch.Generator | None = None
    ) -> Float[Tensor, "batch width"]:
        """Embeddings ``[batch, width]`` of ``labels`` ``[batch]`` (values ``0..num_classes``)."""
        if labels.numel() and (labels.min() < 0 or labels.max() > self.num_classes):
            raise ValueError(
                f"labels must lie in 0..{self.num_classes} ({self.num_classes} = null label), "
                f"got min {int(labels.min())} and max {int(labels.max())}"
            )
        if self.training and self.dropout > 0:
            drop = (
                torch.rand(labels.shape, generator=generator, device=labels.device) < self.dropout
            )
            labels = torch.where(drop, torch.full_like(labels, self.null_label), labels)
        return self.table(labels)

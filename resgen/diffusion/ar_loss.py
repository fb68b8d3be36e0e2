"""The autoregressive baseline's objective: teacher-forced cross-entropy of every token."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch.nn.functional as F
from attrs import frozen
from jaxtyping import Float
from torch import Tensor

from resgen.typing import Labels, Padding, Tokens

__all__ = ["ARLoss", "AutoregressiveModel", "ar_loss"]


@frozen
class ARLoss:
    """An autoregressive training loss with what was measured on the way.

    Attributes:
        loss: scalar to minimise: mean over every (position, depth) token outside padding of
            ``-log p(x_ij | x_<i, x_i,<j)`` (nats per token).
        tokens: number of tokens that contributed.
        accuracy: fraction of them whose most likely code is the true one (a diagnostic).
    """

    loss: Float[Tensor, ""]
    tokens: int
    accuracy: float


@runtime_checkable
class AutoregressiveModel(Protocol):
    """What :func:`ar_loss` needs of a network: teacher-forced logits ``(tokens, labels) ->
    [batch, length, depth, codes]``, e.g. :class:`~resgen.networks.rq_transformer.RQTransformer`.
    Given ``padding`` ``[batch, length]``, it returns the logits of the real positions only,
    packed: ``[positions, depth, codes]`` in the order of ``tokens[~padding]`` (so it may skip
    the padding's work, and no padded logits are allocated)."""

    def __call__(
        self, tokens: Tokens, labels: Labels, padding: Padding | None = None
    ) -> Float[Tensor, "batch length depth codes"] | Float[Tensor, "positions depth codes"]:
        """Logits of every token given the earlier ones (packed when ``padding`` is given)."""
        ...


def ar_loss(
    model: AutoregressiveModel,
    tokens: Tokens,
    labels: Labels,
    *,
    padding: Padding | None = None,
    label_smoothing: float = 0.0,
) -> ARLoss:
    """Teacher-forced cross-entropy of tokens ``[batch, length, depth]`` under ``model``.

    Args:
        model: the network.
        tokens: ``[batch, length, depth]`` training tokens.
        labels: ``[batch]`` class labels (the model drops them to the null label in training).
        padding: optional ``[batch, length]``, ``True`` at padded positions, which are not scored.
            Padding must sit at the end of each sequence: a causal model never looks ahead, so
            trailing padding cannot influence the real positions.
        label_smoothing: passed to :func:`torch.nn.functional.cross_entropy`.

    Returns:
        An :class:`ARLoss`.
    """
    if padding is not None and padding.shape != tokens.shape[:2]:
        raise ValueError(
            f"padding must have shape {tuple(tokens.shape[:2])}, got {tuple(padding.shape)}"
        )
    if padding is None:
        logits, target_tokens = model(tokens, labels), tokens
    else:
        logits, target_tokens = model(tokens, labels, padding), tokens[~padding]
    if logits.shape[:-1] != target_tokens.shape:
        raise ValueError(
            f"model logits have shape {tuple(logits.shape)} but the tokens are "
            f"{tuple(target_tokens.shape)}"
            + ("" if padding is None else " (the real positions' tokens, packed)")
            + ": the model's depth does not match the codec's"
        )
    chosen, target = logits.flatten(0, -2), target_tokens.flatten()
    if target.numel() == 0:
        raise ValueError("every position is padding: the loss is undefined")
    chosen = chosen.float()
    loss = F.cross_entropy(chosen, target.long(), label_smoothing=label_smoothing)
    accuracy = float((chosen.argmax(-1) == target).float().mean())
    return ARLoss(loss=loss, tokens=int(target.numel()), accuracy=accuracy)

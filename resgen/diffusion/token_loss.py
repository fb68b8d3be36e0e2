"""The token-level baseline's objective: cross-entropy of the masked tokens, ResGen's masking.

The paper's "predict tokens directly" ablation: the mask state is drawn exactly as in
:func:`~resgen.diffusion.loss.resgen_loss` (same schedule, same generator calls, so the same seed
gives the same mask), the network sees the same inputs, and each masked depth of each position is
scored by its own categorical instead of a mixture over the cumulative embedding.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from attrs import frozen
from jaxtyping import Float
from torch import Tensor

from resgen.diffusion.loss import TokenEmbedder
from resgen.diffusion.masking import depth_mask, sample_training_counts, split_embeddings
from resgen.diffusion.schedules import MaskSchedule
from resgen.typing import Labels, Latents, MaskCounts, Padding, Tokens

__all__ = ["TokenLoss", "TokenLogitsModel", "token_loss"]


@frozen
class TokenLoss:
    """A token-level training loss with what was measured on the way.

    Attributes:
        loss: scalar to minimise: mean over masked tokens of ``-log p(x_ij)`` (nats per token).
        masked_tokens: number of (position, depth) slots that contributed.
        accuracy: fraction of those slots whose most likely code is the true one (a diagnostic).
    """

    loss: Float[Tensor, ""]
    masked_tokens: int
    accuracy: float


@runtime_checkable
class TokenLogitsModel(Protocol):
    """What :func:`token_loss` needs of a network: ``(visible, counts, labels, padding) ->
    logits [batch, length, depth, codes]``, e.g.
    :class:`~resgen.networks.token_head.MaskedTokenTransformer`."""

    def __call__(
        self, visible: Latents, counts: MaskCounts, labels: Labels, padding: Padding | None
    ) -> Float[Tensor, "batch length depth codes"]:
        """Token logits per position and depth."""
        ...


def token_loss(
    model: TokenLogitsModel,
    embedder: TokenEmbedder,
    tokens: Tokens,
    labels: Labels,
    schedule: MaskSchedule,
    *,
    padding: Padding | None = None,
    generator: torch.Generator | None = None,
    label_smoothing: float = 0.0,
) -> TokenLoss:
    """One Monte Carlo sample of the token-level masked loss on tokens ``[batch, length, depth]``.

    Draws a mask state from ``schedule`` (:func:`~resgen.diffusion.masking.sample_training_counts`),
    feeds the known coarse embeddings to ``model`` and takes the mean cross-entropy of the true
    tokens over every masked (position, depth) slot outside ``padding``.

    Args:
        model: the network.
        embedder: the codec's quantizer (``embed`` gives the per-depth codeword embeddings).
        tokens: ``[batch, length, depth]`` training tokens.
        labels: ``[batch]`` class labels.
        schedule: the training masking schedule.
        padding: optional ``[batch, length]``, ``True`` at padded positions (never masked, never
            scored).
        generator: source of randomness of the mask.
        label_smoothing: passed to :func:`torch.nn.functional.cross_entropy`.

    Returns:
        A :class:`TokenLoss`.
    """
    batch, length, depth = tokens.shape
    counts = sample_training_counts(
        schedule, batch, length, depth, padding=padding, generator=generator, device=tokens.device
    )
    with torch.no_grad():
        visible, _ = split_embeddings(embedder.embed(tokens), counts)
    logits = model(visible, counts, labels, padding)
    if logits.shape[:3] != tokens.shape:
        raise ValueError(
            f"model logits have shape {tuple(logits.shape)} but the tokens are "
            f"{tuple(tokens.shape)}: the model's length or depth does not match the codec's"
        )
    codes = logits.shape[-1]
    if tokens.numel() and int(tokens.max()) >= codes:
        raise ValueError(
            f"token {int(tokens.max())} out of range for a model with {codes} codes per depth"
        )
    masked = depth_mask(counts, depth)
    if padding is not None:
        masked = masked & ~padding[..., None]
    n = int(masked.sum())
    if n == 0:
        raise ValueError("no masked token in the batch: the loss is undefined")
    chosen = logits[masked].float()
    target = tokens[masked].long()
    loss = F.cross_entropy(chosen, target, label_smoothing=label_smoothing)
    accuracy = float((chosen.argmax(-1) == target).float().mean())
    return TokenLoss(loss=loss, masked_tokens=n, accuracy=accuracy)

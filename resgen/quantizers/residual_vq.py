"""Residual vector quantizer with EMA codebooks, k-means initialisation and dead-code restart."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from attrs import field, frozen, validators
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor, nn

from resgen.quantizers.ops import nearest_code
from resgen.typing import Codebooks, DepthEmbeddings, Latents, MaskCounts, Tokens

__all__ = ["ResidualVQConfig", "QuantizerOutput", "ResidualQuantization", "ResidualVQ"]

_positive = validators.gt(0)


@frozen
class ResidualVQConfig:
    """Configuration of :class:`ResidualVQ`.

    Attributes:
        dim: code dimension C.
        codes: codebook size K (per depth).
        depth: RVQ depth D.
        decay: EMA decay of the codebook statistics.
        commitment_weight: weight of the commitment loss (encoder pulled towards its codes).
        kmeans_iters: Lloyd iterations of the k-means initialisation from the first batch.
        dead_code_threshold: a code whose EMA usage count falls below this is restarted from a
            random residual of the current batch.
        epsilon: Laplace smoothing of the EMA cluster sizes.
    """

    dim: int = field(validator=_positive)
    codes: int = field(validator=_positive)
    depth: int = field(validator=_positive)
    decay: float = field(default=0.99, validator=[validators.ge(0.0), validators.lt(1.0)])
    commitment_weight: float = field(default=0.25, validator=validators.ge(0.0))
    kmeans_iters: int = field(default=10, validator=validators.ge(0))
    dead_code_threshold: float = field(default=0.5, validator=validators.ge(0.0))
    epsilon: float = field(default=1e-5, validator=_positive)


@frozen
class QuantizerOutput:
    """What :meth:`ResidualVQ.forward` returns.

    Attributes:
        quantized: ``[batch, length, dim]`` quantized latents, with a straight-through gradient
            to the input.
        tokens: ``[batch, length, depth]`` code indices.
        commitment_loss: scalar, already multiplied by ``commitment_weight``.
        perplexity: ``[depth]`` codebook perplexity of this batch at each depth.
    """

    quantized: Latents
    tokens: Tokens
    commitment_loss: Float[Tensor, ""]
    perplexity: Float[Tensor, " depth"]


@frozen
class ResidualQuantization:
    """What :meth:`ResidualVQ.quantize_from` returns.

    Attributes:
        tokens: ``[batch, length, depth]``; depths below each position's start depth hold 0.
        log_probs: ``[batch, length, depth]`` log-softmax of ``-distance / temperature`` of each
            chosen code (0 below the start depth): a per-token quantization confidence.
        residual: ``[batch, length, dim]`` what is left after the last depth.
    """

    tokens: Tokens
    log_probs: Float[Tensor, "batch length depth"]
    residual: Latents


class ResidualVQ(nn.Module):
    """Residual vector quantizer: depth ``j`` quantizes what depths ``0..j-1`` left unexplained.

    Codebooks are learned by exponential moving averages of assigned residuals (no gradient), are
    initialised by k-means on the first training batch, and codes that fall out of use are restarted
    from random residuals of the current batch. Depth 0 is the coarsest.

    Args:
        config: a :class:`ResidualVQConfig`.
    """

    def __init__(self, config: ResidualVQConfig) -> None:
        super().__init__()
        self.config = config
        d, k, c = config.depth, config.codes, config.dim
        self.register_buffer("codebooks", torch.randn(d, k, c) * 0.02)
        self.register_buffer("ema_sizes", torch.ones(d, k))
        self.register_buffer("ema_sums", self.codebooks.clone())
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def depth(self) -> int:
        """RVQ depth D."""
        return self.config.depth

    @property
    def codes(self) -> int:
        """Codebook size K."""
        return self.config.codes

    @property
    def dim(self) -> int:
        """Code dimension C."""
        return self.config.dim

    def _check_latents(self, latents: Tensor) -> None:
        if latents.ndim != 3 or latents.shape[-1] != self.dim:
            raise ValueError(
                f"expected latents of shape [batch, length, {self.dim}], got {tuple(latents.shape)}"
            )
        if not latents.is_floating_point():
            raise TypeError(f"latents must be floating point, got {latents.dtype}")

    def check_tokens(self, tokens: Tensor) -> None:
        """Raise a clear error unless ``tokens`` is an integer ``[batch, length, depth]`` tensor
        with every value in ``0..codes-1``."""
        if tokens.dtype in (torch.float16, torch.float32, torch.float64, torch.bfloat16, torch.bool):
            raise TypeError(f"tokens must be an integer tensor, got {tokens.dtype}")
        if tokens.ndim != 3 or tokens.shape[-1] != self.depth:
            raise ValueError(
                f"expected tokens of shape [batch, length, {self.depth}] (depth {self.depth}), "
                f"got {tuple(tokens.shape)}"
            )
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.codes):
            raise ValueError(
                f"token out of range: values must lie in 0..{self.codes - 1}, "
                f"got min {int(tokens.min())} and max {int(tokens.max())}"
            )

    # ------------------------------------------------------------------ training
    def forward(self, latents: Latents) -> QuantizerOutput:
        """Quantize ``latents`` ``[batch, length, dim]``; in training mode, also update codebooks.

        Returns:
            A :class:`QuantizerOutput` (straight-through quantized latents, tokens, commitment
            loss, per-depth perplexity).
        """
        self._check_latents(latents)
        batch = latents.shape[0]
        x = rearrange(latents, "b l c -> (b l) c").float()
        if self.training and not bool(self.initialized):
            self._kmeans_init(x.detach())
        residual = x.detach()
        quantized = torch.zeros_like(x)
        tokens, commitment, perplexity = [], x.new_zeros(()), []
        for j in range(self.depth):
            found = nearest_code(residual, self.codebooks[j])
            if self.training:
                self._ema_update(j, residual, found.indices)
            chosen = self.codebooks[j][found.indices]
            # The encoder output minus the (frozen) coarser codes should commit to this code.
            commitment = commitment + F.mse_loss(x - quantized.detach(), chosen.detach())
            quantized = quantized + chosen
            residual = residual - chosen
            tokens.append(found.indices)
            usage = torch.bincount(found.indices, minlength=self.codes).float() / len(residual)
            perplexity.append(torch.exp(-(usage * torch.log(usage + 1e-10)).sum()))
        straight_through = x + (quantized - x).detach()
        return QuantizerOutput(
            quantized=rearrange(straight_through, "(b l) c -> b l c", b=batch).to(latents.dtype),
            tokens=rearrange(torch.stack(tokens, -1), "(b l) d -> b l d", b=batch),
            commitment_loss=self.config.commitment_weight * commitment / self.depth,
            perplexity=torch.stack(perplexity),
        )

    @torch.no_grad()
    def _kmeans_init(self, x: Float[Tensor, "n dim"]) -> None:
        residual = x
        for j in range(self.depth):
            centers = _kmeans(residual, self.codes, self.config.kmeans_iters)
            self.codebooks[j] = centers
            self.ema_sums[j] = centers
            self.ema_sizes[j] = 1.0
            residual = residual - centers[nearest_code(residual, centers).indices]
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, j: int, residual: Float[Tensor, "n dim"], idx: Int[Tensor, " n"]) -> None:
        cfg = self.config
        sizes = torch.bincount(idx, minlength=self.codes).float()
        sums = torch.zeros_like(self.ema_sums[j]).index_add_(0, idx, residual)
        self.ema_sizes[j].lerp_(sizes, 1.0 - cfg.decay)
        self.ema_sums[j].lerp_(sums, 1.0 - cfg.decay)
        total = self.ema_sizes[j].sum()
        smoothed = (self.ema_sizes[j] + cfg.epsilon) / (total + self.codes * cfg.epsilon) * total
        self.codebooks[j] = self.ema_sums[j] / smoothed[:, None]
        dead = self.ema_sizes[j] < cfg.dead_code_threshold
        if dead.any():
            # Restart dead codes on random residuals and reset their EMA state to match.
            picks = torch.randint(0, len(residual), (int(dead.sum()),), device=residual.device)
            self.codebooks[j][dead] = residual[picks]
            self.ema_sums[j][dead] = residual[picks]
            self.ema_sizes[j][dead] = 1.0

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode(self, latents: Latents) -> Tokens:
        """Tokens ``[batch, length, depth]`` of ``latents`` ``[batch, length, dim]`` (no update)."""
        self._check_latents(latents)
        return self.quantize_from(latents, torch.zeros(latents.shape[:2], dtype=torch.long)).tokens

    def embed(self, tokens: Tokens) -> DepthEmbeddings:
        """Per-depth codeword embeddings ``[batch, length, depth, dim]`` of ``tokens``."""
        self.check_tokens(tokens)
        depth_index = torch.arange(self.depth, device=tokens.device)
        return self.codebooks[depth_index, tokens]

    def decode(self, tokens: Tokens) -> Latents:
        """Quantized latents ``[batch, length, dim]``: the sum over depths of the embeddings."""
        return self.embed(tokens).sum(dim=2)

    def get_codebooks(self) -> Codebooks:
        """The codebooks ``[depth, codes, dim]`` (a view; do not modify)."""
        return self.codebooks

    @torch.no_grad()
    def quantize_from(
        self,
        latents: Latents,
        start_depth: MaskCounts | int,
        temperature: float = 1.0,
    ) -> ResidualQuantization:
        """Residual-quantize ``latents`` starting at depth ``start_depth`` of each position.

        For ``j = start .. D-1``: ``x_j = argmin_v ||r - e_j(v)||``, ``r -= e_j(x_j)``. Used by the
        sampler to turn a predicted cumulative embedding of the masked depths into tokens.

        Args:
            latents: ``[batch, length, dim]`` vectors to quantize.
            start_depth: ``[batch, length]`` (or one int for all) first depth to fill, in
                ``0..D``; ``D`` leaves the position untouched.
            temperature: temperature of the per-token log-softmax returned as ``log_probs``.
        """
        self._check_latents(latents)
        batch, length, _ = latents.shape
        if isinstance(start_depth, int):
            start_depth = torch.full((batch, length), start_depth, dtype=torch.long)
        start_depth = start_depth.to(latents.device)
        if start_depth.shape != (batch, length):
            raise ValueError(
                f"start_depth must have shape {(batch, length)}, got {tuple(start_depth.shape)}"
            )
        if start_depth.numel() and (start_depth.min() < 0 or start_depth.max() > self.depth):
            raise ValueError(f"start_depth must lie in 0..{self.depth}")
        # clone: the loop below updates the residual in place and must not touch the caller's data
        residual = rearrange(latents, "b l c -> (b l) c").float().clone()
        start = rearrange(start_depth, "b l -> (b l)")
        tokens = torch.zeros(len(residual), self.depth, dtype=torch.long, device=latents.device)
        log_probs = torch.zeros(len(residual), self.depth, device=latents.device)
        for j in range(self.depth):
            active = start <= j
            if not active.any():
                continue
            found = nearest_code(residual[active], self.codebooks[j], temperature=temperature)
            tokens[active, j] = found.indices
            log_probs[active, j] = found.log_probs
            residual[active] = residual[active] - self.codebooks[j][found.indices]
        return ResidualQuantization(
            tokens=rearrange(tokens, "(b l) d -> b l d", b=batch),
            log_probs=rearrange(log_probs, "(b l) d -> b l d", b=batch),
            residual=rearrange(residual, "(b l) c -> b l c", b=batch),
        )


def _kmeans(x: Float[Tensor, "n dim"], k: int, iters: int) -> Float[Tensor, "k dim"]:
    """Lloyd's k-means from ``k`` random samples; empty clusters keep their previous centre."""
    n = x.shape[0]
    picks = torch.randperm(n, device=x.device)[:k] if n >= k else torch.randint(0, n, (k,))
    centers = x[picks].clone()
    for _ in range(iters):
        idx = nearest_code(x, centers).indices
        sums = torch.zeros_like(centers).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k).float()
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
    return centers

"""Residual vector quantizer: EMA or learned codebooks, k-means++ init, dead-code restart,
quantizer dropout, low-dimensional codes, and codebook state kept identical across DDP ranks."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.distributed as dist
from attrs import evolve, field, frozen, validators
from einops import rearrange, repeat
from jaxtyping import Float, Int
from torch import Tensor, nn

from resgen.quantizers import distributed as rvq_dist
from resgen.quantizers.dropout import sample_depth_cutoffs
from resgen.quantizers.kmeans import kmeans
from resgen.quantizers.ops import Backend, nearest_code, residual_quantize_tensors
from resgen.typing import Codebooks, DepthEmbeddings, Latents, MaskCounts, Padding, Tokens

__all__ = [
    "CodebookUpdate",
    "Commitment",
    "Init",
    "ResidualVQConfig",
    "QuantizerOutput",
    "ResidualQuantization",
    "ResidualVQ",
]

CodebookUpdate = Literal["ema", "gradient"]
"""How codebooks learn: ``"ema"`` (moving averages of assigned residuals, no gradient) or
``"gradient"`` (``nn.Parameter`` codebooks trained by the codebook loss and your optimizer)."""

Init = Literal["kmeans++", "kmeans", "none"]
"""Codebook initialisation on the first training batch: k-means with k-means++ seeding, k-means
from random points, or none (keep the small random-normal initial codes)."""

Commitment = Literal["cumsum", "final"]
"""Form of the commitment loss: ``"cumsum"`` (RQ-VAE: mean over depths ``j`` of
``||z - sg(sum_{i<=j} e_i)||^2``) or ``"final"`` (only the full sum over the used depths)."""

_positive = validators.gt(0)


def _optional_positive(_: object, attribute: object, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value}")


@frozen
class ResidualVQConfig:
    """Configuration of :class:`ResidualVQ`.

    Attributes:
        dim: code dimension C: the space of the codebooks, of :meth:`ResidualVQ.embed` and of
            :meth:`ResidualVQ.quantize_from`.
        codes: codebook size K (per depth).
        depth: RVQ depth D.
        decay: EMA decay of the codebook statistics.
        commitment_weight: weight of the commitment loss (encoder pulled towards its codes).
        kmeans_iters: Lloyd iterations of the k-means initialisation from the first batch.
        dead_code_threshold: a code whose EMA usage count falls below this is restarted from a
            random residual of the current batch (its EMA statistics are reset with it); 0 turns
            restarts off.
        epsilon: Laplace smoothing of the EMA cluster sizes.
        input_dim: dimension of the latents given to ``forward``/``encode`` and returned by
            ``decode``; when set, learned linear projections map it to and from the ``dim``-sized
            code space (low-dimensional codes). ``None``: latents live in code space.
        shared_codebook: one codebook for every depth (``codebooks`` then has shape
            ``[1, codes, dim]``; :meth:`ResidualVQ.get_codebooks` expands it to ``[D, K, C]``).
        codebook_update: ``"ema"`` or ``"gradient"`` (see :data:`CodebookUpdate`).
        codebook_weight: weight of the codebook loss (gradient codebooks only).
        init: ``"kmeans++"``, ``"kmeans"`` or ``"none"`` (see :data:`Init`).
        init_max_points: most vectors (over all ranks) used by the k-means initialisation.
        commitment: ``"cumsum"`` or ``"final"`` (see :data:`Commitment`).
        dropout_prob: quantizer dropout: probability that a training sample is reconstructed from
            a random prefix of its depths only.
        dropout_min_depth: smallest depth prefix kept by quantizer dropout.
        sync_distributed: under an initialised ``torch.distributed`` process group, synchronise
            k-means initialisation, EMA statistics and restarts so every rank holds identical
            codebooks.
        backend: nearest-code implementation of ``encode``/``quantize_from``/training.
        block_codes: codes per tile of the blocked torch nearest-code search.
        block_rows: vectors per tile of the blocked torch nearest-code search (``None``: as
            many as fit a tile of :data:`~resgen.quantizers.ops.TILE_ELEMENTS` scores).
    """

    dim: int = field(validator=_positive)
    codes: int = field(validator=_positive)
    depth: int = field(validator=_positive)
    decay: float = field(default=0.99, validator=[validators.ge(0.0), validators.lt(1.0)])
    commitment_weight: float = field(default=0.25, validator=validators.ge(0.0))
    kmeans_iters: int = field(default=10, validator=validators.ge(0))
    dead_code_threshold: float = field(default=0.5, validator=validators.ge(0.0))
    epsilon: float = field(default=1e-5, validator=_positive)
    input_dim: int | None = field(default=None, validator=_optional_positive)
    shared_codebook: bool = False
    codebook_update: CodebookUpdate = field(
        default="ema", validator=validators.in_(("ema", "gradient"))
    )
    codebook_weight: float = field(default=1.0, validator=validators.ge(0.0))
    init: Init = field(default="kmeans++", validator=validators.in_(("kmeans++", "kmeans", "none")))
    init_max_points: int = field(default=65536, validator=_positive)
    commitment: Commitment = field(default="cumsum", validator=validators.in_(("cumsum", "final")))
    dropout_prob: float = field(default=0.0, validator=[validators.ge(0.0), validators.le(1.0)])
    dropout_min_depth: int = field(default=1, validator=_positive)
    sync_distributed: bool = True
    backend: Backend = field(default="auto", validator=validators.in_(("auto", "torch", "triton")))
    block_codes: int = field(default=4096, validator=_positive)
    block_rows: int | None = field(default=None, validator=_optional_positive)

    def __attrs_post_init__(self) -> None:
        if self.dropout_min_depth > self.depth:
            raise ValueError(
                f"dropout_min_depth ({self.dropout_min_depth}) must not exceed depth ({self.depth})"
            )


@frozen
class QuantizerOutput:
    """What :meth:`ResidualVQ.forward` returns.

    Attributes:
        quantized: ``[batch, length, input_dim]`` quantized latents (the sum of the codes of each
            sample's used depths, projected out), with a straight-through gradient to the input.
        tokens: ``[batch, length, depth]`` code indices of every depth (always valid indices,
            also beyond a sample's dropout cut-off: ``tokens[..., :cutoff]`` decodes to
            ``quantized``).
        commitment_loss: scalar, already multiplied by ``commitment_weight``.
        perplexity: ``[depth]`` codebook perplexity of this batch at each depth (over all ranks
            when training under ``torch.distributed``).
        codebook_loss: scalar codebook loss times ``codebook_weight`` (0 for EMA codebooks).
        commitment_per_depth: ``[depth]`` unweighted commitment term of each depth
            (``||z - sg(sum_{i<=j} e_i)||^2`` per dimension), detached; a diagnostic.
        usage: ``[depth]`` fraction of each depth's codes used at least once in this batch.
        cutoff: ``[batch]`` number of depths used per sample (``depth`` without dropout).
        restarted: scalar int, number of dead codes restarted by this step.
    """

    quantized: Float[Tensor, "batch length latent"]
    tokens: Tokens
    commitment_loss: Float[Tensor, ""]
    perplexity: Float[Tensor, " depth"]
    codebook_loss: Float[Tensor, ""]
    commitment_per_depth: Float[Tensor, " depth"]
    usage: Float[Tensor, " depth"]
    cutoff: Int[Tensor, " batch"]
    restarted: Int[Tensor, ""]

    @property
    def loss(self) -> Float[Tensor, ""]:
        """The quantizer's total auxiliary loss: commitment plus codebook loss (weighted)."""
        return self.commitment_loss + self.codebook_loss


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


_PER_DEPTH = ("codebooks", "ema_sizes", "ema_sums")
"""State entries with one slot per depth (one in all with a shared codebook)."""


class ResidualVQ(nn.Module):
    """Residual vector quantizer: depth ``j`` quantizes what depths ``0..j-1`` left unexplained.

    Depth 0 is the coarsest. By default codebooks are learned by exponential moving averages of
    the assigned residuals (no gradient), initialised by k-means++ on the first training batch,
    and codes that fall out of use are restarted from random residuals of the current batch with
    their EMA statistics reset. Under ``torch.distributed`` every statistic is all-reduced, and
    initialisation and restarts are decided identically on every rank, so the codebooks stay
    bit-identical across ranks. See :class:`ResidualVQConfig` for the options.

    Spaces: ``forward``, ``encode`` take latents ``[batch, length, input_dim]`` and ``decode``
    returns them; ``embed``, ``quantize_from`` and the codebooks live in the ``dim``-sized code
    space (the same space when ``input_dim`` is ``None``).

    Args:
        config: a :class:`ResidualVQConfig`.
    """

    def __init__(self, config: ResidualVQConfig) -> None:
        super().__init__()
        self.config = config
        slots = 1 if config.shared_codebook else config.depth
        k, c = config.codes, config.dim
        initial = torch.randn(slots, k, c) * 0.02
        if config.codebook_update == "gradient":
            self.codebooks = nn.Parameter(initial)
        else:
            self.register_buffer("codebooks", initial)
        self.register_buffer("ema_sizes", torch.ones(slots, k))
        self.register_buffer("ema_sums", initial.clone())
        self.register_buffer("initialized", torch.tensor(False))
        if config.input_dim is not None:
            self.project_in: nn.Module = nn.Linear(config.input_dim, c)
            self.project_out: nn.Module = nn.Linear(c, config.input_dim)
        else:
            self.project_in = nn.Identity()
            self.project_out = nn.Identity()

    # ------------------------------------------------------------------ properties
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
        """Code dimension C (of the codebooks, ``embed`` and ``quantize_from``)."""
        return self.config.dim

    @property
    def input_dim(self) -> int:
        """Dimension of the latents of ``forward``/``encode``/``decode`` (``dim`` without
        projections)."""
        return self.config.input_dim if self.config.input_dim is not None else self.config.dim

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"dim={cfg.dim}, codes={cfg.codes}, depth={cfg.depth}, input_dim={self.input_dim}, "
            f"shared={cfg.shared_codebook}, update={cfg.codebook_update!r}"
        )

    def prefix(self, depth: int) -> ResidualVQ:
        """A quantizer of the first ``depth`` depths of this one (copies, frozen in eval mode).

        Residual quantization is greedy, so its tokens are this quantizer's tokens cut to
        ``depth``: one codec gives the tokens of every shallower depth (how the generator
        benchmark compares depths 8 and 16 on the same codes).
        """
        if not 1 <= depth <= self.depth:
            raise ValueError(f"a prefix needs 1 <= depth <= {self.depth}, got {depth}")
        shallow = ResidualVQ(evolve(self.config, depth=depth, dropout_min_depth=1))
        state = {
            name: value[:depth] if name in _PER_DEPTH and not self.config.shared_codebook else value
            for name, value in self.state_dict().items()
        }
        shallow.load_state_dict(state)
        return shallow.to(self.codebooks.device).eval()

    def get_codebooks(self) -> Codebooks:
        """The codebooks ``[depth, codes, dim]`` (a view, expanded when shared; do not modify)."""
        if self.config.shared_codebook:
            return self.codebooks.expand(self.depth, -1, -1)
        return self.codebooks

    # ------------------------------------------------------------------ input checks
    def _check_latents(self, latents: Tensor, dim: int, name: str = "latents") -> None:
        if latents.ndim != 3 or latents.shape[-1] != dim:
            raise ValueError(
                f"expected {name} of shape [batch, length, {dim}], got {tuple(latents.shape)}"
            )
        if not latents.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {latents.dtype}")
        if latents.device != self.codebooks.device:
            raise ValueError(
                f"{name} are on {latents.device} but the quantizer is on {self.codebooks.device}"
            )
        # A data-dependent check: skipped while torch.compile traces (it would break the graph).
        if (
            not torch.compiler.is_compiling()
            and latents.numel()
            and not bool(torch.isfinite(latents).all())
        ):
            raise ValueError(f"{name} contain NaN or infinite values")

    def _check_depth(self, depth: int | None) -> int:
        if depth is None:
            return self.depth
        if not 1 <= depth <= self.depth:
            raise ValueError(f"depth must lie in 1..{self.depth}, got {depth}")
        return depth

    def check_tokens(self, tokens: Tensor, *, partial: bool = False) -> None:
        """Raise a clear error unless ``tokens`` is a valid integer ``[batch, length, depth]``
        tensor with every value in ``0..codes-1``.

        Args:
            tokens: the tensor to check.
            partial: accept the tokens of the first ``d`` depths only, ``1 <= d <= depth``
                (what ``encode(..., depth=d)`` returns).
        """
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be an integer tensor, got {tokens.dtype}")
        depth_ok = (
            1 <= tokens.shape[-1] <= self.depth if partial else tokens.shape[-1] == self.depth
        )
        if tokens.ndim != 3 or not depth_ok:
            wanted = f"1..{self.depth}" if partial else str(self.depth)
            raise ValueError(
                f"expected tokens of shape [batch, length, depth] with depth {wanted}, "
                f"got {tuple(tokens.shape)}"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.codes):
            raise ValueError(
                f"token out of range: values must lie in 0..{self.codes - 1}, "
                f"got min {int(tokens.min())} and max {int(tokens.max())}"
            )

    # ------------------------------------------------------------------ training
    def forward(self, latents: Latents, padding: Padding | None = None) -> QuantizerOutput:
        """Quantize ``latents``; in training mode also update the codebook statistics.

        Args:
            latents: ``[batch, length, input_dim]``.
            padding: optional ``[batch, length]``, ``True`` at padded positions, which are
                quantized but excluded from losses, statistics and metrics.

        Returns:
            A :class:`QuantizerOutput` (straight-through quantized latents, tokens, losses,
            per-depth perplexity and usage, dropout cut-offs, restarted-code count).
        """
        cfg = self.config
        self._check_latents(latents, self.input_dim)
        batch, length, _ = latents.shape
        if padding is not None and padding.shape != (batch, length):
            raise ValueError(
                f"padding must have shape {(batch, length)}, got {tuple(padding.shape)}"
            )
        z = self.project_in(rearrange(latents, "b l c -> (b l) c")).float()
        n, device = z.shape[0], z.device
        valid = (
            torch.ones(n, dtype=torch.bool, device=device)
            if padding is None
            else ~rearrange(padding.to(device), "b l -> (b l)")
        )
        if self.training and not bool(self.initialized):
            self._initialise(z.detach()[valid])

        if self.training and cfg.dropout_prob > 0:
            cutoff = sample_depth_cutoffs(
                batch, self.depth, prob=cfg.dropout_prob, min_depth=cfg.dropout_min_depth
            ).to(device)
        else:
            cutoff = torch.full((batch,), self.depth, dtype=torch.long, device=device)
        used = torch.arange(self.depth, device=device)[None, :] < repeat(
            cutoff, "b -> (b l) 1", l=length
        )  # [n, D]: depth used for this row's output
        weights = (used & valid[:, None]).float()  # [n, D]: rows counted in losses and stats

        tokens, counts, sums, candidates = self._assign(z.detach(), weights)
        chosen = self.get_codebooks()[torch.arange(self.depth, device=device), tokens]  # [n,D,C]
        quantized = (chosen * used[..., None]).sum(1)

        cum = chosen.detach().cumsum(1)
        per_row = (z[:, None, :] - cum).pow(2).mean(-1)  # [n, D], gradient to z
        denom = weights.sum(0).clamp_min(1.0)
        commitment_per_depth = (per_row.detach() * weights).sum(0) / denom
        if cfg.commitment == "cumsum":
            commitment = (per_row * weights).sum() / weights.sum().clamp_min(1.0)
        else:
            last = (cutoff - 1).repeat_interleave(length)[:, None]
            final = per_row.gather(1, last).squeeze(1)
            commitment = (final * valid).sum() / valid.sum().clamp_min(1)
        if cfg.codebook_update == "gradient":
            inputs = z.detach()[:, None, :] - (cum - chosen.detach())  # residual entering depth j
            code_err = (inputs - chosen).pow(2).mean(-1)
            codebook_loss = (
                cfg.codebook_weight * (code_err * weights).sum() / weights.sum().clamp(min=1.0)
            )
        else:
            codebook_loss = z.new_zeros(())

        restarted = torch.zeros((), dtype=torch.long, device=device)
        if self.training:
            counts = self._update(counts, sums, candidates, restarted)
        perplexity, usage = _usage_metrics(counts)

        # Straight-through: the value is exactly ``quantized``, the gradient flows to ``z``.
        out = self.project_out(quantized + (z - z.detach()))
        return QuantizerOutput(
            quantized=rearrange(out, "(b l) c -> b l c", b=batch).to(latents.dtype),
            tokens=rearrange(tokens, "(b l) d -> b l d", b=batch),
            commitment_loss=cfg.commitment_weight * commitment,
            perplexity=perplexity,
            codebook_loss=codebook_loss,
            commitment_per_depth=commitment_per_depth,
            usage=usage,
            cutoff=cutoff,
            restarted=restarted,
        )

    @torch.no_grad()
    def _assign(
        self, z: Float[Tensor, "n dim"], weights: Float[Tensor, "n depth"]
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Quantize every depth; gather the weighted assignment statistics of each depth.

        Returns tokens ``[n, D]``, counts ``[D, K]``, sums ``[D, K, C]`` (EMA training only) and
        restart candidates ``[D, K, C]`` (training with restarts only).
        """
        cfg = self.config
        n = z.shape[0]
        codebooks = self.get_codebooks().detach()
        residual = z.clone()
        tokens = torch.empty(n, self.depth, dtype=torch.long, device=z.device)
        counts = z.new_zeros(self.depth, self.codes)
        want_sums = self.training and cfg.codebook_update == "ema"
        want_candidates = self.training and cfg.dead_code_threshold > 0
        sums = z.new_zeros(self.depth, self.codes, self.dim) if want_sums else None
        candidates = z.new_zeros(self.depth, self.codes, self.dim) if want_candidates else None
        for j in range(self.depth):
            w = weights[:, j]
            found = nearest_code(
                residual,
                codebooks[j],
                block_codes=cfg.block_codes,
                block_rows=cfg.block_rows,
                backend=cfg.backend,
            )
            idx = found.indices
            tokens[:, j] = idx
            counts[j] = torch.bincount(idx, weights=w, minlength=self.codes)
            if sums is not None:
                sums[j].index_add_(0, idx, residual * w[:, None])
            if candidates is not None and n > 0:
                probs = w if bool(w.any()) else torch.ones_like(w)
                picks = torch.multinomial(probs, self.codes, replacement=True)
                candidates[j] = residual[picks]
            residual -= codebooks[j].index_select(0, idx)
        return tokens, counts, sums, candidates

    @torch.no_grad()
    def _update(
        self,
        counts: Float[Tensor, "depth codes"],
        sums: Float[Tensor, "depth codes dim"] | None,
        candidates: Float[Tensor, "depth codes dim"] | None,
        restarted: Int[Tensor, ""],
    ) -> Float[Tensor, "depth codes"]:
        """EMA update and dead-code restart from this batch's statistics (all-reduced across
        ranks first). Returns the (global) per-depth counts for the metrics."""
        cfg = self.config
        sync = cfg.sync_distributed and rvq_dist.is_distributed()
        if cfg.shared_codebook and sums is not None:
            sums = sums.sum(0, keepdim=True)
        if sync:
            flat = [counts.flatten()] + ([sums.flatten()] if sums is not None else [])
            packed = rvq_dist.all_reduce_sum(torch.cat(flat))
            counts = packed[: counts.numel()].view_as(counts)
            if sums is not None:
                sums = packed[counts.numel() :].view_as(sums)
        slot_counts = counts.sum(0, keepdim=True) if cfg.shared_codebook else counts
        self.ema_sizes.lerp_(slot_counts, 1.0 - cfg.decay)
        if sums is not None:
            self.ema_sums.lerp_(sums, 1.0 - cfg.decay)
            total = self.ema_sizes.sum(-1, keepdim=True)
            smoothed = (self.ema_sizes + cfg.epsilon) / (total + self.codes * cfg.epsilon) * total
            self.codebooks.copy_(self.ema_sums / smoothed[..., None])
        if candidates is not None:
            if cfg.shared_codebook:
                pool = rearrange(candidates, "d k c -> (d k) c")
                pick = torch.randint(0, pool.shape[0], (self.codes,), device=pool.device)
                candidates = pool[pick][None]
            restarted.fill_(self._restart_dead(candidates, sync))
        return counts

    @torch.no_grad()
    def _restart_dead(self, candidates: Float[Tensor, "slots codes dim"], sync: bool) -> int:
        """Restart codes whose EMA size fell below the threshold, resetting their EMA state.

        ``ema_sizes`` is identical on every rank (all-reduced), so every rank finds the same dead
        codes and takes part in the same collective: no rank can hang the others. Replacement
        vectors come from every rank in turn (dead code ``i`` takes rank ``i % world``'s
        candidate), and are gathered so every rank writes the same values.
        """
        cfg = self.config
        dead = self.ema_sizes < cfg.dead_code_threshold  # [slots, K], same on every rank
        per_slot = dead.sum(-1).tolist()
        total = int(sum(per_slot))
        if total == 0:
            return 0
        local = torch.cat([candidates[s, :m] for s, m in enumerate(per_slot)], dim=0)
        if sync:
            world = rvq_dist.world_size()
            gathered = rearrange(rvq_dist.all_gather_rows(local), "(w t) c -> w t c", w=world)
            order = torch.arange(total, device=local.device)
            local = gathered[order % world, order]
        size = max(1.0, cfg.dead_code_threshold)
        self.codebooks.data[dead] = local
        self.ema_sums[dead] = local * size
        self.ema_sizes[dead] = size
        return total

    @torch.no_grad()
    def _initialise(self, z: Float[Tensor, "n dim"]) -> None:
        """Initialise the codebooks from the first training batch (k-means), identically on
        every rank: the sample is gathered from all ranks and rank 0's result is broadcast."""
        cfg = self.config
        sync = cfg.sync_distributed and rvq_dist.is_distributed()
        if cfg.init == "none":
            centers = self.codebooks.detach().clone()
        else:
            world = rvq_dist.world_size() if sync else 1
            local_cap = math.ceil(cfg.init_max_points / world)
            if z.shape[0] > local_cap:
                z = z[torch.randperm(z.shape[0], device=z.device)[:local_cap]]
            sample = rvq_dist.all_gather_rows(z) if sync else z
            if sample.shape[0] == 0:
                raise ValueError("cannot initialise the codebooks from an empty batch")
            if not sync or dist.get_rank() == 0:
                centers = self._fit(sample)
            else:
                centers = torch.empty_like(self.codebooks)
        if sync:
            centers = rvq_dist.broadcast(centers.contiguous())
        self.codebooks.data.copy_(centers)
        self.ema_sums.copy_(centers)
        self.ema_sizes.fill_(1.0)
        self.initialized.fill_(True)

    def _fit(self, x: Float[Tensor, "n dim"]) -> Float[Tensor, "slots codes dim"]:
        cfg = self.config
        plus = cfg.init == "kmeans++"

        def fit(points: Tensor) -> Tensor:
            return kmeans(points, self.codes, cfg.kmeans_iters, plus_plus=plus)

        residual, fitted = x, []
        for _ in range(self.depth):
            centers = fit(residual) if not (cfg.shared_codebook and fitted) else fitted[0]
            fitted.append(centers)
            residual = residual - centers[nearest_code(residual, centers).indices]
        if not cfg.shared_codebook:
            return torch.stack(fitted)
        # One codebook for every depth: fit it on the pooled residuals of all depths.
        pooled, r = [x], x
        for _ in range(self.depth - 1):
            r = r - fitted[0][nearest_code(r, fitted[0]).indices]
            pooled.append(r)
        pool = torch.cat(pooled)
        if pool.shape[0] > cfg.init_max_points:
            pool = pool[torch.randperm(pool.shape[0], device=pool.device)[: cfg.init_max_points]]
        return fit(pool)[None]

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode(self, latents: Latents, depth: int | None = None) -> Tokens:
        """Tokens of ``latents`` (no codebook update, whatever the mode).

        Args:
            latents: ``[batch, length, input_dim]``.
            depth: encode only the first ``depth`` depths (``1..D``; default all).

        Returns:
            ``[batch, length, depth]`` int64 tokens.
        """
        self._check_latents(latents, self.input_dim)
        d = self._check_depth(depth)
        batch = latents.shape[0]
        z = self.project_in(rearrange(latents, "b l c -> (b l) c"))
        tokens, _, _ = residual_quantize_tensors(
            z,
            self.get_codebooks()[:d],
            block_codes=self.config.block_codes,
            block_rows=self.config.block_rows,
            backend=self.config.backend,
        )
        return rearrange(tokens, "(b l) d -> b l d", b=batch)

    def embed(self, tokens: Tokens, *, partial: bool = False) -> DepthEmbeddings:
        """Per-depth codeword embeddings ``[batch, length, depth, dim]`` of ``tokens`` (code space).

        Args:
            tokens: ``[batch, length, depth]``.
            partial: accept the tokens of the first ``d <= D`` depths only.
        """
        self.check_tokens(tokens, partial=partial)
        tokens = tokens.to(self.codebooks.device).long()
        depth_index = torch.arange(tokens.shape[-1], device=tokens.device)
        return self.get_codebooks()[depth_index, tokens]

    def decode(self, tokens: Tokens, *, partial: bool = False) -> Float[Tensor, "batch length c"]:
        """Quantized latents ``[batch, length, input_dim]``: the sum over depths of the codes,
        projected out.

        Args:
            tokens: ``[batch, length, depth]``.
            partial: accept the tokens of the first ``d <= D`` depths only (decoding at a lower
                bitrate, as trained by quantizer dropout).
        """
        return self.project_out(self.embed(tokens, partial=partial).sum(dim=2))

    @torch.no_grad()
    def quantize_from(
        self,
        latents: Latents,
        start_depth: MaskCounts | int,
        temperature: float = 1.0,
    ) -> ResidualQuantization:
        """Residual-quantize code-space vectors starting at depth ``start_depth`` of each position.

        For ``j = start .. D-1``: ``x_j = argmin_v ||r - e_j(v)||``, ``r -= e_j(x_j)``. Used by the
        sampler to turn a predicted cumulative embedding of the masked depths into tokens.

        Args:
            latents: ``[batch, length, dim]`` vectors in code space.
            start_depth: ``[batch, length]`` (or one int for all) first depth to fill, in
                ``0..D``; ``D`` leaves the position untouched.
            temperature: temperature of the per-token log-softmax returned as ``log_probs``.

        Returns:
            A :class:`ResidualQuantization` (tokens, per-token log-probs, final residual).
        """
        self._check_latents(latents, self.dim)
        batch, length, _ = latents.shape
        if isinstance(start_depth, int):
            if not 0 <= start_depth <= self.depth:
                raise ValueError(f"start_depth must lie in 0..{self.depth}, got {start_depth}")
            start: Tensor | int = start_depth
        else:
            if start_depth.shape != (batch, length):
                raise ValueError(
                    f"start_depth must have shape {(batch, length)}, got {tuple(start_depth.shape)}"
                )
            if start_depth.numel() and (
                int(start_depth.min()) < 0 or int(start_depth.max()) > self.depth
            ):
                raise ValueError(f"start_depth must lie in 0..{self.depth}")
            start = rearrange(start_depth.to(latents.device), "b l -> (b l)")
        tokens, log_probs, residual = residual_quantize_tensors(
            rearrange(latents, "b l c -> (b l) c"),
            self.get_codebooks(),
            start=start,
            temperature=temperature,
            block_codes=self.config.block_codes,
            block_rows=self.config.block_rows,
            backend=self.config.backend,
        )
        return ResidualQuantization(
            tokens=rearrange(tokens, "(b l) d -> b l d", b=batch),
            log_probs=rearrange(log_probs, "(b l) d -> b l d", b=batch),
            residual=rearrange(residual, "(b l) c -> b l c", b=batch),
        )


def _usage_metrics(
    counts: Float[Tensor, "depth codes"],
) -> tuple[Float[Tensor, " depth"], Float[Tensor, " depth"]]:
    """Per-depth perplexity and fraction of codes used, from assignment counts."""
    probs = counts / counts.sum(-1, keepdim=True).clamp_min(1e-12)
    perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum(-1))
    usage = (counts > 0).float().mean(-1)
    return perplexity, usage

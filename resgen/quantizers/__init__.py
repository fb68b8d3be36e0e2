"""Residual vector quantizers and their nearest-code ops.

* :class:`ResidualVQ` / :class:`ResidualVQConfig`: the residual quantizer (EMA or gradient
  codebooks, k-means++ init, dead-code restart, quantizer dropout, low-dimensional codes,
  shared or per-depth codebooks, synchronised under ``torch.distributed``).
* :func:`nearest_code` / :func:`residual_quantize`: the fused nearest-code search (blocked torch,
  or a Triton kernel on CUDA), bounded in memory whatever the codebook size.
"""

from resgen.quantizers.dropout import sample_depth_cutoffs
from resgen.quantizers.kmeans import kmeans, kmeans_plus_plus
from resgen.quantizers.ops import (
    Backend,
    NearestCode,
    ResidualCodes,
    nearest_code,
    residual_quantize,
    resolve_backend,
)
from resgen.quantizers.residual_vq import (
    CodebookUpdate,
    Commitment,
    Init,
    QuantizerOutput,
    ResidualQuantization,
    ResidualVQ,
    ResidualVQConfig,
)

__all__ = [
    "Backend",
    "CodebookUpdate",
    "Commitment",
    "Init",
    "NearestCode",
    "QuantizerOutput",
    "ResidualCodes",
    "ResidualQuantization",
    "ResidualVQ",
    "ResidualVQConfig",
    "kmeans",
    "kmeans_plus_plus",
    "nearest_code",
    "residual_quantize",
    "resolve_backend",
    "sample_depth_cutoffs",
]

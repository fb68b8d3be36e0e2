"""The math of the masking process, the losses and the samplers.

Schedules (:mod:`~resgen.diffusion.schedules`), fine-to-coarse masking
(:mod:`~resgen.diffusion.masking`), the exact T-step process and its ELBO
(:mod:`~resgen.diffusion.process`), mixture densities and ResGen's loss, the iterative sampler with
its guiders and confidence rules, and the paper's baselines on the same tokens: token-level masked
prediction and the autoregressive RQ-Transformer.
"""

from resgen.diffusion.ar_loss import ARLoss, ar_loss
from resgen.diffusion.ar_sampler import ARSampler, ARSamplerConfig
from resgen.diffusion.confidence import (
    CombinedConfidence,
    Confidence,
    MixtureConfidence,
    Proposal,
    QuantizationConfidence,
)
from resgen.diffusion.guidance import ClassifierFreeGuidance, Guider
from resgen.diffusion.loss import ResGenLoss, masked_mixture_nll, resgen_loss
from resgen.diffusion.masking import (
    depth_mask,
    sample_mask_counts,
    sample_training_counts,
    split_embeddings,
    split_on_guess,
)
from resgen.diffusion.mixture import (
    MixtureParams,
    mixture_log_prob,
    mixture_mean,
    sample_mixture,
)
from resgen.diffusion.sampler import (
    IterativeSampler,
    ResGenSampler,
    SamplerConfig,
    unmask_iteratively,
)
from resgen.diffusion.schedules import (
    ArccosSchedule,
    CosineSchedule,
    LinearSchedule,
    MaskSchedule,
    PowerSchedule,
    masked_count,
    schedule_from_name,
)
from resgen.diffusion.token_loss import TokenLoss, token_loss
from resgen.diffusion.token_sampler import TokenSampler, TokenSamplerConfig
from resgen.diffusion.unmasking import masked_targets, reveal_most_confident

__all__ = [
    "ARLoss",
    "ARSampler",
    "ARSamplerConfig",
    "ArccosSchedule",
    "ClassifierFreeGuidance",
    "CombinedConfidence",
    "Confidence",
    "CosineSchedule",
    "Guider",
    "LinearSchedule",
    "MaskSchedule",
    "MixtureConfidence",
    "MixtureParams",
    "PowerSchedule",
    "Proposal",
    "QuantizationConfidence",
    "ResGenLoss",
    "IterativeSampler",
    "ResGenSampler",
    "SamplerConfig",
    "TokenLoss",
    "TokenSampler",
    "TokenSamplerConfig",
    "ar_loss",
    "depth_mask",
    "masked_count",
    "masked_mixture_nll",
    "masked_targets",
    "mixture_log_prob",
    "mixture_mean",
    "resgen_loss",
    "reveal_most_confident",
    "sample_mask_counts",
    "sample_mixture",
    "sample_training_counts",
    "schedule_from_name",
    "split_embeddings",
    "split_on_guess",
    "token_loss",
    "unmask_iteratively",
]

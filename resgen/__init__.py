"""resgen: generative modelling over residual vector quantization (RVQ) tokens.

The first public implementation of ResGen (Kim et al., ICML 2025), as a library of small
shape-typed components: residual quantizers (:mod:`resgen.quantizers`), the masking process,
losses and samplers (:mod:`resgen.diffusion`), networks and heads (:mod:`resgen.networks`), modality
codecs (:mod:`resgen.codecs`), evaluators (:mod:`resgen.eval`) and bundled recipes
(:mod:`resgen.recipes`).
"""

__version__ = "0.1.0"

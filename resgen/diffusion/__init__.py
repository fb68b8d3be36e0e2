"""resgen.diffusion."""

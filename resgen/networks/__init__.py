"""resgen.networks."""

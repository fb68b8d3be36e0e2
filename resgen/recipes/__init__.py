"""resgen.recipes."""

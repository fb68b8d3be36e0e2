"""resgen.eval."""

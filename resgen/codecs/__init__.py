"""resgen.codecs."""

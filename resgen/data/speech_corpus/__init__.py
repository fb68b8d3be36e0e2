"""The embedded synthetic multi-speaker speech corpus, split by concern: the sentence grammar
(:mod:`~resgen.data.speech_corpus.grammar`), the voices and how their synthesiser programs run
(:mod:`~resgen.data.speech_corpus.voices`), the corpus builder
(:mod:`~resgen.data.speech_corpus.builder`) and the synthesisers' phone alignments
(:mod:`~resgen.data.speech_corpus.phone_alignments`). The corpus is written in the manifest
format of :mod:`resgen.data.manifest`.
"""

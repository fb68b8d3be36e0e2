"""Data on disk: audio and image readers and writers (:mod:`~resgen.data.audio_io`,
:mod:`~resgen.data.image_io`), the manifest format of a speech corpus
(:mod:`~resgen.data.manifest`), Fashion-MNIST (:mod:`~resgen.data.fashion_mnist`), a folder of
your own images (:mod:`~resgen.data.image_folder`), LibriTTS
(:mod:`~resgen.data.libritts`) and the synthetic speech corpus (:mod:`resgen.data.speech_corpus`).
"""

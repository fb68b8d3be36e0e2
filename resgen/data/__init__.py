"""Data on disk: audio and image readers and writers (:mod:`~resgen.data.audio_io`,
:mod:`~resgen.data.image_io`), the manifest format of a speech corpus
(:mod:`~resgen.data.manifest`), Fashion-MNIST (:mod:`~resgen.data.fashion_mnist`), a folder of
your own small images with one sub-folder per class (:mod:`~resgen.data.class_folders`), LibriTTS
(:mod:`~resgen.data.libritts`), the synthetic speech corpus (:mod:`resgen.data.speech_corpus`),
ImageNet-style image folders (:mod:`~resgen.data.image_folder`) and code stores of pre-tokenized
data (:mod:`~resgen.data.code_store`).
"""

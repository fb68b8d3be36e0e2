"""What makes a text-to-speech system out of the library's parts, apart from any recipe: text
front-ends and the :class:`~resgen.tts.front_ends.TextFrontEnd` plug point
(:mod:`~resgen.tts.front_ends`), the learned phoneme timing (:mod:`~resgen.tts.timing`), batches
of prompt + target examples (:mod:`~resgen.tts.batches`), the prompted objectives
(:mod:`~resgen.tts.objectives`) and synthesis (:mod:`~resgen.tts.synthesis`, what
``resgen tts`` runs).
"""

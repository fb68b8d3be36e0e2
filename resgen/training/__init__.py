"""The training machinery every recipe shares: the resumable stage loop
(:mod:`~resgen.training.trainer`), the processes of a torchrun world
(:mod:`~resgen.training.distributed`) and FSDP2 sharding (:mod:`~resgen.training.sharding`),
checkpoint folders (:mod:`~resgen.training.checkpoint`), weight averaging
(:mod:`~resgen.training.averaging`) and loss plots and image grids
(:mod:`~resgen.training.plots`). It imports no recipe.
"""

"""Writes a small code store, on one process or under torchrun (the store tests run it).

``python store_worker.py STORE`` tokenizes 70 random images with a small untrained image codec
(horizontal flips as a second view; every 9th example marked skipped) into ``STORE``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from resgen.codecs import ImageCodecConfig, ImageRVQVAE
from resgen.data.code_store import StoreMeta, weights_hash, write_code_store
from resgen.training import distributed

EXAMPLES = 70


def make(path: Path) -> None:
    """Write the store at ``path`` (every process of the world calls this)."""
    torch.manual_seed(0)
    codec = ImageRVQVAE(ImageCodecConfig(hidden=8, latent_dim=4, codes=300, depth=3)).eval()
    images = torch.rand(EXAMPLES, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    meta = StoreMeta(
        tokenizer="ImageRVQVAE(test)",
        tokenizer_hash=weights_hash(codec),
        depth=3,
        codes=300,
        length=49,
        crop="none",
        views=("identity", "hflip"),
    )

    def encode(start: int, stop: int):  # noqa: ANN202
        batch = images[start:stop]
        codes = torch.stack([codec.encode(batch), codec.encode(batch.flip(-1))], dim=1)
        rows = torch.arange(start, stop)
        return codes, rows % 5, (rows % 9 == 8).to(torch.uint8)

    write_code_store(path, meta, EXAMPLES, encode, chunk=16, status_names=("ok", "corrupt"))


if __name__ == "__main__":
    distributed.init_from_env("cpu")
    try:
        make(Path(sys.argv[1]))
    finally:
        distributed.release()

"""The baselines' tests run tiny networks: one thread avoids oversubscribing shared CPUs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # With tiny matrices, two threads on a loaded 2-core machine spend most of their time waiting
    # for each other (measured: 25 training steps of the test RQ-Transformer took 0.15 s on one
    # thread and 7-18 s on two while other jobs ran).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Test-suite set-up: every public function of ``resgen`` is shape-checked at call time.

jaxtyping's import hook wraps each function and class of the package with ``@jaxtyped`` and a
beartype check, so a wrong shape or dtype anywhere in the suite fails loudly. It must be installed
before anything imports ``resgen``, hence here, at the top of the root conftest.
"""

from jaxtyping import install_import_hook

# Kept installed for the whole session (not a ``with`` block): submodules imported later by the
# test modules must be hooked too.
install_import_hook("resgen", "beartype.beartype")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class _KillingBar:
    """Stands in for the trainer's progress bar; ends the first run of each stage part-way."""

    killed: list[str]

    def __init__(self, iterable, *, desc: str, total: int, **_: object) -> None:  # noqa: ANN001
        self.steps, self.desc, self.kill_at = iterable, desc, (2 * total) // 3

    def __iter__(self):  # noqa: ANN204
        for step in self.steps:
            if self.desc not in self.killed and step == self.kill_at:
                self.killed.append(self.desc)
                raise KeyboardInterrupt  # what Ctrl-C (or a kill the trainer survives) does
            yield step

    def set_postfix(self, **_: object) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


@pytest.fixture
def kill_each_stage(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Interrupt every training stage once, two thirds of the way through its steps (after its
    first checkpoint when it has one); returns the names of the stages killed so far."""
    import resgen.training.trainer as trainer

    killed: list[str] = []
    monkeypatch.setattr(trainer, "tqdm", type("Bar", (_KillingBar,), {"killed": killed}))
    return killed

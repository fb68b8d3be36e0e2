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

"""ADM-format reference batches and a class probe for the Inception Score.

ImageNet 256 results are reported against a *reference batch* in the format of ADM's evaluation
suite (guided-diffusion's ``evaluations/``): an ``.npz`` holding ``arr_0``, uint8 images
``[n, height, width, 3]``, and the statistics ``mu`` ``[2048]`` and ``sigma`` ``[2048, 2048]`` of
their Inception pool3 features. Papers use ``VIRTUAL_imagenet256_labeled.npz`` (10,000 training
images); the user supplies it (nothing is downloaded). :func:`read_reference` reads one,
:func:`write_reference` writes one from images (with this project's offline Inception).

The offline Inception has no 1008-way classifier, so the Inception Score here is computed from a
softmax *probe* (:func:`fit_probe`: multinomial logistic regression on pool3 features of labelled
real images, e.g. a few per class of the validation split). It measures the same thing (confident
and diverse class predictions) but is not comparable with published IS values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from attrs import frozen
from jaxtyping import Float, Int, UInt8

from resgen.files import atomic_write

__all__ = ["ReferenceBatch", "fit_probe", "read_reference", "write_reference"]


@frozen
class ReferenceBatch:
    """An ADM reference batch.

    Attributes:
        images: ``[n, height, width, 3]`` uint8 (``arr_0``).
        mu: ``[feat]`` mean of their Inception features.
        sigma: ``[feat, feat]`` covariance of their Inception features.
    """

    images: UInt8[np.ndarray, "n height width 3"]
    mu: Float[np.ndarray, " feat"]
    sigma: Float[np.ndarray, "feat feat"]


def read_reference(path: str | Path) -> ReferenceBatch:
    """Read an ADM reference batch (``arr_0``, ``mu``, ``sigma``; other keys are ignored).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: it is not an ``.npz`` with those keys, or their shapes do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"the reference batch {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("arr_0", "mu", "sigma") if k not in data.files]
            if missing:
                raise ValueError(f"lacks {', '.join(missing)} (has {', '.join(data.files)})")
            images, mu, sigma = data["arr_0"], data["mu"], data["sigma"]
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path} is not an ADM reference batch: {error}") from error
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"{path}: arr_0 must be uint8 [n, h, w, 3], got {images.dtype} {images.shape}"
        )
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit")
    return ReferenceBatch(images, mu.astype(np.float64), sigma.astype(np.float64))


def write_reference(
    path: str | Path,
    images: UInt8[np.ndarray, "n height width 3"],
    features: Float[np.ndarray, "n feat"],
) -> None:
    """Write an ADM reference batch of ``images`` with the statistics of their ``features``
    (mean, and covariance with ``n - 1`` in the denominator), whole or not at all."""
    mu = features.astype(np.float64).mean(axis=0)
    sigma = np.atleast_2d(np.cov(features.astype(np.float64), rowvar=False))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as file:
            np.savez(file, arr_0=images, mu=mu, sigma=sigma)

    atomic_write(path, write)


def fit_probe(
    features: Float[np.ndarray, "n feat"],
    labels: Int[np.ndarray, " n"],
    classes: int,
    *,
    steps: int = 200,
    weight_decay: float = 1e-3,
) -> torch.nn.Module:
    """A softmax classifier of features: multinomial logistic regression on standardised
    features, fitted with L-BFGS (deterministic).

    Args:
        features: ``[n, feat]`` features of labelled real images.
        labels: ``[n]`` their classes in ``0 .. classes - 1``.
        classes: number of classes.
        steps: L-BFGS iterations.
        weight_decay: L2 penalty on the weights.

    Returns:
        A module mapping features ``[m, feat]`` to class probabilities ``[m, classes]``.
    """
    x = torch.from_numpy(np.asarray(features, dtype=np.float64))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    linear = torch.nn.Linear(x.shape[1], classes, dtype=torch.float64)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(
        linear.parameters(), max_iter=steps, line_search_fn="strong_wolfe"
    )
    z = (x - mean) / std

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(z), y)
        loss = loss + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)

    class _Probe(torch.nn.Module):
        def forward(self, feats: torch.Tensor) -> torch.Tensor:
            scaled = (torch.as_tensor(feats, dtype=torch.float64) - mean) / std
            return torch.softmax(linear(scaled), dim=-1)

    return _Probe().eval()

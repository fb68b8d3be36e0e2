"""Fréchet distance between Gaussians fitted to feature sets (FID), and cached feature statistics.

The formula is the one of Heusel et al. (2017) as computed by pytorch-fid::

    d^2 = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})

with every quantity in float64. The trace of the matrix square root is taken, by default, as the
sum of the singular values of ``F2^T F1``, where ``S_i = F_i F_i^T`` are factors from ``eigh``
(eigenvalues at rounding level dropped): their squares are the non-zero eigenvalues of
``S1 S2``, so the trace is the same exactly, but the computation never produces complex numbers
and stays accurate (and cheap) on rank-deficient covariances (fewer samples than features).
``method="sqrtm"`` uses :func:`scipy.linalg.sqrtm` on ``S1 S2`` exactly as pytorch-fid does,
including its ``eps`` diagonal offset when the product is singular.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
from attrs import field, frozen
from jaxtyping import Float
from torch import Tensor

__all__ = ["frechet_distance", "frechet_distance_from_features", "FeatureStats"]

_STATS_FORMAT = 1
_INCEPTION_NAME = "inception-2015-12-05"


def _check_gaussian(mu: np.ndarray, sigma: np.ndarray, which: str) -> None:
    if mu.ndim != 1:
        raise ValueError(f"mu{which} must be a vector [feat], got shape {mu.shape}")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"sigma{which} must be [feat, feat] = {(mu.shape[0], mu.shape[0])}, got {sigma.shape}"
        )
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"mu{which} / sigma{which} contain NaN or infinity")


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """``F`` with ``F F^T = sigma``: ``U sqrt(L)`` over the eigenvalues above rounding level."""
    eigvals, eigvecs = np.linalg.eigh((sigma + sigma.T) / 2)
    floor = max(eigvals.max(initial=0.0), 0.0) * sigma.shape[0] * np.finfo(np.float64).eps
    keep = eigvals > floor
    return eigvecs[:, keep] * np.sqrt(eigvals[keep])


def _sqrtm_trace_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr((S1 S2)^{1/2})`` as the nuclear norm of ``F2^T F1`` with ``S_i = F_i F_i^T``.

    The squared singular values of ``F2^T F1`` are the eigenvalues of ``F1^T S2 F1``, whose
    non-zero ones are those of ``S1 S2``. Taking them from an SVD avoids square roots of
    eigenvalues at rounding level (which would add ~1e-8 per null direction on rank-deficient
    covariances), and the factors only keep the covariances' numerical rank, so small sample
    sets are cheap.
    """
    factor1, factor2 = _psd_factor(sigma1), _psd_factor(sigma2)
    if factor1.shape[1] == 0 or factor2.shape[1] == 0:
        return 0.0
    return float(np.linalg.svd(factor2.T @ factor1, compute_uv=False).sum())


def _sqrtm_trace_scipy(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    """``Tr((S1 S2)^{1/2})`` with scipy's ``sqrtm``, as pytorch-fid computes it."""
    from scipy import linalg

    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            worst = np.max(np.abs(covmean.imag))
            raise ValueError(f"sqrtm(S1 S2) has a large imaginary component ({worst:.3g})")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(
    mu1: Float[np.ndarray, " feat"],
    sigma1: Float[np.ndarray, "feat feat"],
    mu2: Float[np.ndarray, " feat"],
    sigma2: Float[np.ndarray, "feat feat"],
    *,
    method: Literal["eigh", "sqrtm"] = "eigh",
    eps: float = 1e-6,
) -> float:
    """Squared Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (the FID).

    ``||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^{1/2})``, in float64
    whatever the input precision (pytorch-fid's formula).

    Args:
        mu1: ``[feat]`` mean of the first feature set.
        sigma1: ``[feat, feat]`` covariance of the first feature set.
        mu2: ``[feat]`` mean of the second feature set.
        sigma2: ``[feat, feat]`` covariance of the second feature set.
        method: ``"eigh"`` (default): the trace of the square root as the sum of the singular
            values of ``F2^T F1`` with ``sigma_i = F_i F_i^T`` (factors by ``eigh``; never
            complex);
            ``"sqrtm"``: :func:`scipy.linalg.sqrtm` of ``sigma1 @ sigma2``, as pytorch-fid.
        eps: diagonal offset used by ``"sqrtm"`` when the product is singular (pytorch-fid's).

    Returns:
        The distance (a Python float, >= 0 up to rounding).

    Raises:
        ValueError: on mismatched shapes, non-finite inputs or an unknown method.
    """
    mu1 = np.asarray(mu1, dtype=np.float64)
    mu2 = np.asarray(mu2, dtype=np.float64)
    sigma1 = np.asarray(sigma1, dtype=np.float64)
    sigma2 = np.asarray(sigma2, dtype=np.float64)
    _check_gaussian(mu1, sigma1, "1")
    _check_gaussian(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    if method == "eigh":
        tr_covmean = _sqrtm_trace_eigh(sigma1, sigma2)
    elif method == "sqrtm":
        tr_covmean = _sqrtm_trace_scipy(sigma1, sigma2, eps)
    else:
        raise ValueError(f"unknown method {method!r}; expected 'eigh' or 'sqrtm'")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def _to_numpy64(features: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(features, Tensor):
        features = features.detach().cpu().numpy()
    return np.asarray(features, dtype=np.float64)


def frechet_distance_from_features(
    features1: Float[np.ndarray, "n1 feat"] | Float[Tensor, "n1 feat"],
    features2: Float[np.ndarray, "n2 feat"] | Float[Tensor, "n2 feat"],
) -> float:
    """The same FID as :func:`frechet_distance` of the two sets' statistics, from the features.

    With ``A_i`` the centred features of set ``i`` (``[n_i, feat]``) and ``c_i = n_i - 1``, the
    covariances are ``S_i = A_i^T A_i / c_i``; the non-zero eigenvalues of ``S1 S2`` are the squared
    singular values of ``A1 A2^T / sqrt(c1 c2)``, so ``Tr((S1 S2)^{1/2})`` is that
    ``[n1, n2]`` matrix's nuclear norm. When the sets are smaller than the feature dimension this
    is much cheaper than the ``[feat, feat]`` decompositions, and exact. For larger sets it falls
    back to :func:`frechet_distance` on the statistics.

    Args:
        features1: ``[n1, feat]`` features of the first set (n1 >= 2).
        features2: ``[n2, feat]`` features of the second set (n2 >= 2).

    Returns:
        The distance.
    """
    x1, x2 = _to_numpy64(features1), _to_numpy64(features2)
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"feature dimensions differ: {x1.shape[1]} vs {x2.shape[1]}")
    if min(x1.shape[0], x2.shape[0]) < 2:
        raise ValueError(f"need at least 2 rows per set, got {x1.shape[0]} and {x2.shape[0]}")
    if not (np.isfinite(x1).all() and np.isfinite(x2).all()):
        raise ValueError("features contain NaN or infinity")
    if x1.shape[0] * x2.shape[0] > x1.shape[1] ** 2:
        return frechet_distance(
            x1.mean(0),
            np.atleast_2d(np.cov(x1, rowvar=False)),
            x2.mean(0),
            np.atleast_2d(np.cov(x2, rowvar=False)),
        )
    mu1, mu2 = x1.mean(0), x2.mean(0)
    a1, a2 = x1 - mu1, x2 - mu2
    c1, c2 = x1.shape[0] - 1, x2.shape[0] - 1
    tr_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt(c1 * c2)
    diff = mu1 - mu2
    trace1, trace2 = (a1 * a1).sum() / c1, (a2 * a2).sum() / c2
    return float(diff @ diff + trace1 + trace2 - 2.0 * tr_covmean)


@frozen
class FeatureStats:
    """Mean and covariance of a feature set: all that FID needs, cacheable as ``.npz``.

    Attributes:
        mu: ``[feat]`` float64 mean.
        sigma: ``[feat, feat]`` float64 covariance (unbiased, ``n - 1`` in the denominator, as
            ``numpy.cov`` and pytorch-fid).
        count: number of samples the statistics were computed from.
        extractor: name of the feature extractor (e.g. ``"inception-2015-12-05"``); two
            statistics are only comparable when their extractors match.
    """

    mu: Float[np.ndarray, " feat"] = field(converter=lambda a: np.asarray(a, dtype=np.float64))
    sigma: Float[np.ndarray, "feat feat"] = field(
        converter=lambda a: np.asarray(a, dtype=np.float64)
    )
    count: int = field(converter=int)
    extractor: str = field(converter=str)

    def __attrs_post_init__(self) -> None:
        _check_gaussian(self.mu, self.sigma, "")
        if self.count < 2:
            raise ValueError(f"statistics need at least 2 samples, got count={self.count}")

    @classmethod
    def from_features(
        cls, features: Float[np.ndarray, "n feat"] | Float[Tensor, "n feat"], extractor: str
    ) -> FeatureStats:
        """Fit the statistics to a feature matrix.

        Args:
            features: ``[n, feat]`` one row per sample (n >= 2); converted to float64 first.
            extractor: name of the extractor that produced the features.

        Returns:
            The statistics.
        """
        feats = _to_numpy64(features)
        if feats.shape[0] < 2:
            raise ValueError(f"need at least 2 feature rows, got {feats.shape[0]}")
        return cls(
            mu=feats.mean(axis=0),
            sigma=np.atleast_2d(np.cov(feats, rowvar=False)),
            count=feats.shape[0],
            extractor=extractor,
        )

    def frechet_distance(self, other: FeatureStats, **kwargs: object) -> float:
        """FID between these statistics and ``other`` (see :func:`frechet_distance`).

        Args:
            other: statistics from the same extractor.
            **kwargs: passed to :func:`frechet_distance` (``method``, ``eps``).

        Returns:
            The distance.

        Raises:
            ValueError: when the two extractors differ.
        """
        if self.extractor != other.extractor:
            raise ValueError(
                f"cannot compare statistics of different extractors: "
                f"{self.extractor!r} vs {other.extractor!r}"
            )
        return frechet_distance(self.mu, self.sigma, other.mu, other.sigma, **kwargs)

    def save(self, path: str | Path) -> Path:
        """Write the statistics to an ``.npz`` file (keys ``mu``, ``sigma``, ``count``,
        ``extractor``, ``format``); the parent folder is created.

        Args:
            path: destination; ``.npz`` is appended by numpy when missing.

        Returns:
            The path written.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            mu=self.mu,
            sigma=self.sigma,
            count=np.int64(self.count),
            extractor=np.str_(self.extractor),
            format=np.int64(_STATS_FORMAT),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        """Read statistics written by :meth:`save`.

        Also accepts pytorch-fid's ``.npz`` files (keys ``mu`` and ``sigma`` only); their count
        and extractor are then unknown (``count`` is set to 2, ``extractor`` to
        ``"inception-2015-12-05"``, the extractor pytorch-fid uses).

        Args:
            path: an ``.npz`` file.

        Returns:
            The statistics.

        Raises:
            FileNotFoundError: when the file does not exist.
            ValueError: when it is not an ``.npz`` file or lacks ``mu`` or ``sigma``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no statistics file at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, AttributeError) as error:
            # numpy's own message for a file that is not .npz talks of pickles; ours is plainer
            raise ValueError(f"{path} is not a readable .npz statistics file") from error
        missing = {"mu", "sigma"} - set(arrays)
        if missing:
            raise ValueError(f"{path} is not a statistics file: missing {sorted(missing)}")
        count = int(arrays["count"]) if "count" in arrays else 2
        extractor = str(arrays["extractor"]) if "extractor" in arrays else _INCEPTION_NAME
        return cls(mu=arrays["mu"], sigma=arrays["sigma"], count=count, extractor=extractor)

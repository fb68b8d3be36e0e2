"""A small convolutional Fashion-MNIST classifier, and the class accuracy of generated samples."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from resgen.typing import Images, Labels

__all__ = ["FashionClassifier", "class_accuracy", "module_device"]


def module_device(module: nn.Module, default: str | torch.device = "cpu") -> torch.device:
    """The device of ``module``'s first parameter (or buffer); ``default`` when it has none."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device(default)


class FashionClassifier(nn.Module):
    """Two conv stages and two linear layers; ``features`` is the 128-d penultimate layer.

    Trained on the real Fashion-MNIST training set by the image recipe (its test accuracy is
    written to ``metrics.json``). Images are ``[batch, 1, 28, 28]`` in ``[-1, 1]``.
    """

    feature_dim = 128

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(64 * 7 * 7, self.feature_dim),
            nn.ReLU(),
        )
        self.out = nn.Linear(self.feature_dim, num_classes)

    def features(self, images: Images) -> Float[Tensor, "batch 128"]:
        """Penultimate features ``[batch, 128]`` (used for classifier-feature FID)."""
        if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected images [batch, 1, 28, 28], got {tuple(images.shape)}")
        return self.body(images)

    def forward(self, images: Images) -> Float[Tensor, "batch classes"]:
        """Class logits ``[batch, classes]``."""
        return self.out(self.features(images))


@torch.no_grad()
def class_accuracy(
    classifier: nn.Module, samples: Images, labels: Labels, *, batch_size: int = 500
) -> float:
    """Fraction of ``samples`` ``[batch, 1, 28, 28]`` that ``classifier`` assigns to ``labels``.

    The classifier is put in eval mode for the measurement and restored afterwards. ``samples``
    and ``labels`` may live on any device: each batch is moved to the classifier's.
    """
    if samples.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{samples.shape[0]} samples but {labels.shape[0]} labels: they must match"
        )
    device = module_device(classifier, default=samples.device)
    was_training = classifier.training
    classifier.eval()
    correct = 0
    for start in range(0, samples.shape[0], batch_size):
        logits = classifier(samples[start : start + batch_size].to(device))
        wanted = labels[start : start + batch_size].to(logits.device)
        correct += int((logits.argmax(-1) == wanted).sum())
    classifier.train(was_training)
    return correct / max(1, samples.shape[0])

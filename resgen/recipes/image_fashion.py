"""Recipe ``image-fashion``: class-conditional ResGen on Fashion-MNIST, end to end on a CPU.

The data are Fashion-MNIST, or your own images: a ``data_dir`` laid out as one sub-folder of
images per class (:mod:`resgen.data.class_folders`) is read instead, converted to 28x28 grayscale,
and every stage works on its classes.

Stages (each resumable, each under its own folder of ``--out``):

1. ``codec``: train an :class:`~resgen.codecs.ImageRVQVAE` (28x28 -> 7x7 grid x D tokens);
2. ``classifier``: train the :class:`~resgen.eval.classifier.FashionClassifier` used to score
   samples (real training set);
3. ``tokens``: tokenize the training set once (cached);
4. ``generator``: train a :class:`~resgen.networks.MaskedRVQTransformer` with ResGen's loss;
5. ``sample``: a 10x10 class-conditional grid (row c = class c) and 1,000 samples for class
   accuracy, then ``metrics.json`` and ``loss.png``.

Every stage runs on the device given to :func:`run` (``device="cpu"`` by default, or e.g.
``"cuda"``). The data set stays on the CPU and each batch is moved; examples are picked by a CPU
generator, so every device trains on the same batches (the masks and sampling noise are drawn on
the device). Checkpoints, the token cache, ``metrics.json`` and the PNGs are written from the CPU:
a run trained on one device resumes and samples on another.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from attrs import asdict, evolve, field, frozen, validators
from einops import rearrange
from jaxtyping import Float, Int
from safetensors.torch import load_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from resgen.codecs import ImageCodecConfig, ImageRVQVAE
from resgen.data.class_folders import is_class_folders, load_class_folders
from resgen.data.fashion_mnist import FASHION_CLASSES, load_fashion_mnist
from resgen.diffusion.ar_sampler import ARSampler
from resgen.diffusion.loss import ResGenObjective
from resgen.diffusion.sampler import ResGenSampler, SamplerConfig
from resgen.diffusion.schedules import CosineSchedule
from resgen.diffusion.token_sampler import TokenSampler
from resgen.eval.classifier import FashionClassifier, class_accuracy, module_device
from resgen.recipes.generators import (
    GENERATOR_KINDS,
    build_generator,
    generator_loss,
    make_sampler,
    objective_target_scales,
    rebuild_generator,
    with_new_objective_options,
)
from resgen.training.checkpoint import (
    CheckpointError,
    build_from_config,
    finished_checkpoint,
    load_checkpoint,
    read_json,
    save_tensors,
    write_json,
)
from resgen.training.plots import save_image_grid, save_loss_plot
from resgen.training.run_lock import check_run_folder, lock_run_folder
from resgen.training.trainer import (
    BatchPart,
    StageSpec,
    batch_generator,
    resolve_device,
    run_stage,
    with_new_stage_options,
)
from resgen.typing import Images, Labels

__all__ = [
    "ImageFashionConfig",
    "PRESETS",
    "configure",
    "run",
    "load_trained",
    "generate_images",
    "make_recipe_sampler",
    "read_data",
    "run_classes",
]

NUM_CLASSES = 10
"""Fashion-MNIST's classes (a run on your own images has as many as its folder)."""

IMAGE_SIZE = 28
"""Side of the images every stage works on (the classifier's input); your own images are
converted to it."""

GRID_COLUMNS = 10
"""Samples per class (one row each) in ``samples.png``."""


@frozen
class ImageFashionConfig:
    """Everything the recipe needs; a preset is one of these.

    Attributes:
        codec: the image codec.
        codec_stage: its training schedule.
        classifier_stage: the evaluation classifier's training schedule.
        generator: which generator to train: ``resgen`` (the paper's method), ``token``
            (token-level masked prediction) or ``ar`` (autoregressive RQ-Transformer); see
            :mod:`resgen.recipes.generators`.
        network: width, layers, heads and kind-specific sizes of the generator (``length``,
            ``depth`` and the code sizes are taken from the codec).
        objective: ResGen's training objective (the baselines ignore it). The default, the
            Jensen split with beta-NLL weighting, is the one whose samples carry their class;
            see the Results page for the exact NLL beside it.
        generator_stage: the generator's training schedule.
        sampler: sampling options for the grid and the evaluation samples.
        guidance_scale: classifier-free guidance scale (1 = none).
        eval_samples: samples (an equal number per class) scored by the classifier; their
            classifier-feature FID is taken against the whole test split.
        inception_fid_samples: generated images (and as many test images) whose Inception FID is
            reported; 0 skips it (the Inception network runs at about 7 images/s on 2 cores).
        train_subset: use only the first N training images (``None`` = all 60,000).
        test_subset: use only the first N test images for reconstruction and classifier scores.
        seed: seed of every random choice.
    """

    codec: ImageCodecConfig = field(factory=ImageCodecConfig)
    codec_stage: StageSpec = field(
        factory=lambda: StageSpec(steps=1000, batch_size=128, lr=2e-3, warmup=50)
    )
    classifier_stage: StageSpec = field(
        factory=lambda: StageSpec(steps=600, batch_size=128, lr=2e-3, warmup=50)
    )
    generator: str = field(default="resgen", validator=validators.in_(GENERATOR_KINDS))
    network: dict[str, Any] = field(
        factory=lambda: {
            "width": 256,
            "layers": 6,
            "heads": 4,
            "components": 16,
            "head_rank": 128,
            "depth_layers": 2,
        }
    )
    objective: ResGenObjective = field(
        factory=lambda: ResGenObjective(
            kind="jensen", beta=1.0, normalize_targets=True, regression_weight=0.1
        )
    )
    generator_stage: StageSpec = field(
        factory=lambda: StageSpec(steps=1200, batch_size=64, lr=1e-3, weight_decay=0.01, warmup=100)
    )
    # Measured on the demo's depth-8 network (Results page): Gaussian temperature 0.5 and the
    # mixture confidence gave the best class accuracy.
    sampler: SamplerConfig = field(
        factory=lambda: SamplerConfig(steps=16, temperature=0.5, confidence="mixture")
    )
    guidance_scale: float = field(default=3.0, validator=validators.ge(0.0))
    eval_samples: int = field(default=1000, validator=validators.ge(NUM_CLASSES))
    inception_fid_samples: int = field(default=500, validator=validators.ge(0))
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0


PRESETS: dict[str, ImageFashionConfig] = {
    # A few minutes of codec, a 7.4M-parameter generator: garments recognisable per class.
    "demo": ImageFashionConfig(),
    # Everything tiny: checks the whole pipeline in well under a minute.
    "smoke": ImageFashionConfig(
        codec=ImageCodecConfig(hidden=16, latent_dim=8, codes=32, depth=4),
        codec_stage=StageSpec(steps=25, batch_size=32, lr=3e-3, checkpoint_every=10),
        classifier_stage=StageSpec(steps=10, batch_size=32, lr=2e-3, checkpoint_every=10),
        network={
            "width": 32,
            "layers": 1,
            "heads": 2,
            "components": 4,
            "head_rank": 16,
            "depth_layers": 1,
        },
        generator_stage=StageSpec(steps=25, batch_size=16, lr=1e-3, checkpoint_every=10),
        sampler=SamplerConfig(steps=4),
        eval_samples=100,
        inception_fid_samples=0,
        train_subset=1000,
        test_subset=500,
    ),
}


_TRAINING_FIELDS = (
    "codec",
    "codec_stage",
    "classifier_stage",
    "generator",
    "network",
    "objective",
    "generator_stage",
    "train_subset",
    "seed",
)
"""Fields whose change invalidates trained stages of a run folder."""


def _config_dict(config: ImageFashionConfig) -> dict[str, Any]:
    out = asdict(config, recurse=True)
    out["sampler"]["schedule"] = type(config.sampler.schedule).__name__
    return out


# --------------------------------------------------------------------------- stages
def _pick(data: Tensor, idx: Tensor, device: torch.device) -> Tensor:
    """``data[idx]`` on ``device`` (the index follows the data; the batch moves, not the data)."""
    return data[idx.to(data.device)].to(device)


def train_codec(
    config: ImageFashionConfig,
    images: Images,
    folder: Path,
    *,
    device: str | torch.device = "cpu",
) -> tuple[ImageRVQVAE, list[tuple[int, float]], float]:
    """Stage 1: train the RVQ-VAE on ``images``; returns it, its loss history and seconds.

    Args:
        config: the recipe configuration (``codec``, ``codec_stage``, ``seed``).
        images: ``[n, 1, 28, 28]`` training images on any device (batches are moved).
        folder: the stage's folder.
        device: where the codec trains; the returned codec lives there.
    """
    device = resolve_device(device)
    torch.manual_seed(config.seed)
    codec = ImageRVQVAE(config.codec).to(device)
    spec = config.codec_stage

    def loss_fn(step: int, part: BatchPart | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        idx = torch.randint(
            len(images), (spec.batch_size,), generator=batch_generator(config.seed, step)
        )
        if part is not None:  # one micro-batch of the global batch (several processes)
            idx = part.rows(idx)
        loss, out = codec.loss(_pick(images, idx, device))
        return loss, {"ppl": float(out.perplexity.mean())}

    result = run_stage(
        "codec",
        folder,
        {"codec": codec},
        spec,
        loss_fn,
        {"codec": config.codec.to_dict()},
        device=device,
    )
    return codec.eval(), result.history, result.seconds


def train_classifier(
    config: ImageFashionConfig,
    images: Images,
    labels: Labels,
    folder: Path,
    *,
    device: str | torch.device = "cpu",
    num_classes: int = NUM_CLASSES,
) -> tuple[FashionClassifier, list[tuple[int, float]], float]:
    """Stage 2: train the evaluation classifier on real images (random flips and shifts).

    Args:
        config: the recipe configuration (``classifier_stage``, ``seed``).
        images: ``[n, 1, 28, 28]`` training images on any device (batches are moved).
        labels: ``[n]`` their classes.
        folder: the stage's folder.
        device: where the classifier trains; the returned classifier lives there.
        num_classes: classes of the data.
    """
    device = resolve_device(device)
    torch.manual_seed(config.seed + 1)
    classifier = FashionClassifier(num_classes).to(device)
    spec = config.classifier_stage

    def loss_fn(step: int, part: BatchPart | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        gen = batch_generator(config.seed + 1, step)  # CPU: the same batches on every device
        idx = torch.randint(len(images), (spec.batch_size,), generator=gen)
        if part is not None:  # one micro-batch of the global batch (several processes)
            idx, gen = part.rows(idx), part.generator(config.seed + 1)
        batch = images[idx.to(images.device)].cpu()
        flip = torch.rand(len(batch), generator=gen) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        logits = classifier(batch.to(device))
        loss = torch.nn.functional.cross_entropy(logits, _pick(labels, idx, device))
        return loss, {}

    result = run_stage(
        "classifier",
        folder,
        {"classifier": classifier},
        spec,
        loss_fn,
        {"classes": num_classes},
        device=device,
    )
    return classifier.eval(), result.history, result.seconds


def tokenize(
    codec: ImageRVQVAE,
    images: Images,
    path: Path,
    batch_size: int = 1000,
    *,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Stage 3: tokens ``[n, length, depth]`` of ``images``, cached at ``path`` (safetensors).

    Args:
        codec: the trained codec.
        images: ``[n, 1, 28, 28]`` images on any device.
        path: the cache file.
        batch_size: images encoded at once.
        device: where to encode (the codec is moved there); ``None``: the codec's device.

    Returns:
        The tokens, on the CPU (as cached).
    """
    device = module_device(codec) if device is None else resolve_device(device)
    codec.to(device)
    if path.is_file():
        tokens = load_file(str(path))["tokens"].long()
        if tokens.shape == (len(images), codec.length, codec.depth):
            return tokens
    chunks = [
        codec.encode(images[i : i + batch_size].to(device)).cpu()
        for i in tqdm(range(0, len(images), batch_size), desc="tokens")
    ]
    tokens = torch.cat(chunks)
    save_tensors({"tokens": tokens.to(torch.int16).contiguous()}, path)
    return tokens


def train_generator(
    config: ImageFashionConfig,
    codec: ImageRVQVAE,
    tokens: torch.Tensor,
    labels: Labels,
    folder: Path,
    *,
    device: str | torch.device = "cpu",
    num_classes: int = NUM_CLASSES,
) -> tuple[nn.Module, list[tuple[int, float]], float]:
    """Stage 4: train the chosen generator on the cached tokens; returns it, history and seconds.

    Args:
        config: the recipe configuration (``generator``, ``network``, ``generator_stage``).
        codec: the trained codec (moved to ``device``; its quantizer embeds the tokens).
        tokens: ``[n, length, depth]`` training tokens on any device (batches are moved).
        labels: ``[n]`` their classes.
        folder: the stage's folder.
        device: where the generator trains; the returned generator lives there. Batches are
            picked by a CPU generator; the masks are drawn by a generator on ``device`` (the
            same generator on the CPU).
        num_classes: classes of the data.
    """
    device = resolve_device(device)
    codec.to(device)
    torch.manual_seed(config.seed + 2)
    model, network = build_generator(
        config.generator,
        codec.quantizer,
        codec.length,
        num_classes,
        config.network,
        config.objective,
        target_scales=objective_target_scales(config.objective, codec.quantizer, tokens),
    )
    model.to(device)
    spec = config.generator_stage
    schedule = CosineSchedule()

    def loss_fn(step: int, part: BatchPart | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        gen = batch_generator(config.seed + 2, step)
        idx = torch.randint(len(tokens), (spec.batch_size,), generator=gen)
        noise = gen if device.type == "cpu" else batch_generator(config.seed + 2, step, device)
        if part is not None:  # one micro-batch of the global batch (several processes)
            idx, noise = part.rows(idx), part.generator(config.seed + 2, device)
        loss = generator_loss(
            config.generator,
            model,
            codec.quantizer,
            _pick(tokens, idx, device),
            _pick(labels, idx, device),
            schedule,
            noise,
            config.objective,
        )
        return loss, {}

    result = run_stage(
        "generator",
        folder,
        {"generator": model},
        spec,
        loss_fn,
        {"network": network},
        device=device,
    )
    return model.eval(), result.history, result.seconds


def generate_images(
    codec: ImageRVQVAE,
    model: nn.Module,
    labels: Labels,
    sampler: ResGenSampler | TokenSampler | ARSampler,
    *,
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> Images:
    """Sample one image per label ``[n]``; returns ``[n, 1, 28, 28]`` in ``[-1, 1]``, on the CPU.

    Args:
        codec: the trained codec (decodes the tokens).
        model: the trained generator.
        labels: ``[n]`` class labels, on any device.
        sampler: the generator's sampler (:func:`make_recipe_sampler`).
        seed: seed of the sampling noise (a generator on the sampling device: the same seed gives
            the same images on one device, not across devices).
        batch_size: samples drawn at once.
        progress: show a progress bar.
        device: where to sample (``model`` and ``codec`` are moved there); ``None``: the
            model's device.
    """
    device = module_device(model) if device is None else resolve_device(device)
    model.to(device)
    codec.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    chunks = range(0, len(labels), batch_size)
    for start in tqdm(chunks, desc="sampling", disable=not progress):
        part = labels[start : start + batch_size].to(device)
        tokens = sampler.sample(model, codec.quantizer, part, codec.length, generator=generator)
        out.append(codec.decode(tokens).cpu())
    return torch.cat(out)


def make_recipe_sampler(config: ImageFashionConfig) -> ResGenSampler | TokenSampler | ARSampler:
    """The sampler of the configured generator (classifier-free guidance unless the scale is 1)."""
    return make_sampler(config.generator, config.sampler, config.guidance_scale)


# --------------------------------------------------------------------------- the recipe
def run(
    out_dir: str | Path,
    config: ImageFashionConfig | None = None,
    *,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Run every stage into ``out_dir`` (resuming what is there) and return the metrics.

    Args:
        out_dir: the run folder.
        config: the recipe configuration (default: the ``demo`` preset).
        data_dir: folder of the Fashion-MNIST files (default: the system data set), or a folder
            of your own images with one sub-folder per class (see :func:`read_data`).
        device: where to train, sample and evaluate (``"cpu"``, ``"cuda"``, ``"cuda:0"``...).
            Everything written is device-independent: a run folder started on one device
            resumes on another. The same seed gives the same numbers on the CPU; on a GPU the
            numbers differ slightly (other kernels, other random streams).

    Raises:
        ValueError: the device is unknown or unavailable, the data set is unreadable, or
            ``out_dir`` holds a run trained with another configuration.
        RunFolderInUseError: another process is writing ``out_dir``.
    """
    device = resolve_device(device)
    config = config or PRESETS["demo"]
    out = check_run_folder(out_dir)
    # The data are read before the run folder is made: a bad --data-dir leaves nothing behind.
    tick = time.perf_counter()
    classes, *data = read_data(config, data_dir)
    with lock_run_folder(out):
        return _run(out, config, classes, tuple(data), time.perf_counter() - tick, device)


def read_data(
    config: ImageFashionConfig, data_dir: str | Path | None = None
) -> tuple[
    tuple[str, ...],
    Float[Tensor, "train 1 28 28"],
    Int[Tensor, " train"],
    Float[Tensor, "test 1 28 28"],
    Int[Tensor, " test"],
]:
    """The class names and the training and test images and labels of a run.

    ``data_dir`` laid out as a folder of images (one sub-folder per class, see
    :mod:`resgen.data.class_folders`) gives your own images at 28x28 grayscale, with the last
    tenth of each class as the test split; any other ``data_dir`` (or ``None``) is read as the
    Fashion-MNIST files. ``config.train_subset`` and ``config.test_subset`` apply to both.
    """
    if data_dir is not None and is_class_folders(data_dir):
        split = load_class_folders(data_dir, IMAGE_SIZE)
        classes = split.classes
        train_x, train_y = split.train_images, split.train_labels
        test_x, test_y = split.test_images, split.test_labels
    else:
        classes = FASHION_CLASSES
        train_x, train_y = load_fashion_mnist("train", data_dir)
        test_x, test_y = load_fashion_mnist("test", data_dir)
    if config.train_subset:
        train_x, train_y = train_x[: config.train_subset], train_y[: config.train_subset]
    if config.test_subset:
        test_x, test_y = test_x[: config.test_subset], test_y[: config.test_subset]
    return classes, train_x, train_y, test_x, test_y


def run_classes(run_dir: str | Path) -> tuple[str, ...]:
    """The class names a run was trained on (index = label), from its ``recipe.json``; runs
    written before the recipe read other images are Fashion-MNIST's."""
    saved = read_config_json(Path(run_dir) / "recipe.json")
    classes = saved.get("classes", list(FASHION_CLASSES))
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{Path(run_dir) / 'recipe.json'} holds no usable class list")
    return tuple(classes)


def _run(
    out: Path,
    config: ImageFashionConfig,
    classes: tuple[str, ...],
    data: tuple[
        Float[Tensor, "train 1 28 28"],
        Int[Tensor, " train"],
        Float[Tensor, "test 1 28 28"],
        Int[Tensor, " test"],
    ],
    data_seconds: float,
    device: torch.device,
) -> dict[str, Any]:
    """:func:`run` once the data (class names; training images and labels, test images and
    labels) are read and the run folder is locked."""
    train_x, train_y, test_x, test_y = data
    num_classes = len(classes)
    config_dict = _config_dict(config)
    if (out / "recipe.json").is_file():
        # Sampling and evaluation settings may change between runs (only those stages re-run);
        # anything that shaped a trained stage may not.
        saved = with_new_stage_options(
            with_new_objective_options(read_config_json(out / "recipe.json")),
            ("codec_stage", "classifier_stage", "generator_stage"),
        )
        changed = sorted(k for k in _TRAINING_FIELDS if saved.get(k) != config_dict.get(k))
        if changed:
            raise ValueError(
                f"{out} holds a run trained with another configuration (differs in: "
                f"{', '.join(changed)}); use a new --out folder"
            )
        if run_classes(out) != classes:
            raise ValueError(
                f"{out} holds a run trained on other classes ({', '.join(run_classes(out))}; "
                f"these data have {', '.join(classes)}); use a new --out folder"
            )
    write_json(out / "recipe.json", {**config_dict, "classes": list(classes)})
    wall: dict[str, float] = {"data": data_seconds}

    tick = time.perf_counter()
    codec, codec_history, _ = train_codec(config, train_x, out / "codec", device=device)
    with torch.no_grad():
        recon = torch.cat(
            [
                codec.decode(codec.encode(test_x[i : i + 1000].to(device))).cpu()
                for i in range(0, len(test_x), 1000)
            ]
        )
    reconstruction_mse = float(((recon - test_x) ** 2).mean())
    wall["codec"] = time.perf_counter() - tick

    tick = time.perf_counter()
    classifier, classifier_history, _ = train_classifier(
        config, train_x, train_y, out / "classifier", device=device, num_classes=num_classes
    )
    classifier_test_accuracy = class_accuracy(classifier, test_x, test_y)
    wall["classifier"] = time.perf_counter() - tick

    tick = time.perf_counter()
    tokens = tokenize(codec, train_x, out / "tokens.safetensors", device=device)
    wall["tokens"] = time.perf_counter() - tick

    tick = time.perf_counter()
    model, generator_history, _ = train_generator(
        config, codec, tokens, train_y, out / "generator", device=device, num_classes=num_classes
    )
    wall["generator"] = time.perf_counter() - tick

    tick = time.perf_counter()
    sampler = make_recipe_sampler(config)
    grid_labels = torch.arange(num_classes).repeat_interleave(GRID_COLUMNS)
    grid = generate_images(
        codec, model, grid_labels, sampler, seed=config.seed, progress=False, device=device
    )
    save_image_grid(grid, out / "samples.png", rows=num_classes)
    eval_labels = torch.arange(num_classes).repeat_interleave(config.eval_samples // num_classes)
    sample_tick = time.perf_counter()
    samples = generate_images(
        codec, model, eval_labels, sampler, seed=config.seed + 1, device=device
    )
    seconds_per_image = (time.perf_counter() - sample_tick) / len(eval_labels)
    accuracy = class_accuracy(classifier, samples, eval_labels)
    wall["sample"] = time.perf_counter() - tick

    tick = time.perf_counter()
    fids = fid_metrics(
        config, classifier, samples, test_x, out, device=device, num_classes=num_classes
    )
    wall["fid"] = time.perf_counter() - tick

    save_loss_plot(
        {"codec": codec_history, "classifier": classifier_history, "generator": generator_history},
        out / "loss.png",
    )
    metrics = {
        "codec_reconstruction_mse": reconstruction_mse,
        "codec_final_loss": codec_history[-1][1] if codec_history else None,
        "classifier_final_loss": classifier_history[-1][1] if classifier_history else None,
        "classifier_test_accuracy": classifier_test_accuracy,
        "generator_final_loss": generator_history[-1][1] if generator_history else None,
        "generator": config.generator,
        "classes": list(classes),
        "depth": codec.depth,
        "generator_loss_unit": (
            "nats per code dimension" if config.generator == "resgen" else "nats per token"
        ),
        "class_accuracy": accuracy,
        "class_accuracy_samples": len(eval_labels),
        "sampling_seconds_per_image": seconds_per_image,
        **fids,
        "sampling_steps": config.sampler.steps,
        "guidance_scale": config.guidance_scale,
        "generator_parameters": sum(p.numel() for p in model.parameters()),
        "wall_seconds": wall,
        "wall_seconds_total": sum(wall.values()),
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def fid_metrics(
    config: ImageFashionConfig,
    classifier: FashionClassifier,
    samples: Images,
    test_images: Float[Tensor, "real channels height width"],
    out: Path,
    *,
    device: str | torch.device | None = None,
    num_classes: int = NUM_CLASSES,
) -> dict[str, Any]:
    """Fréchet distances of ``samples`` to the test split: classifier features and Inception.

    Real statistics are cached as ``.npz`` in ``out``. See the "Evaluation" page for the protocol.
    ``samples`` and ``test_images`` may live on any device: the classifier features are taken on
    the classifier's device, the Inception features on ``device`` (``None``: the classifier's).
    ``samples`` come grouped by class, the same number for each of ``num_classes``.
    """
    from resgen.eval.features import ClassifierFeatures, InceptionFeatures, compute_stats

    device = module_device(classifier) if device is None else resolve_device(device)
    fashion = ClassifierFeatures(classifier)
    real = compute_stats(fashion, test_images, cache=out / "fid_real_fashion.npz", desc="real")
    fake = compute_stats(fashion, samples, desc="generated")
    metrics: dict[str, Any] = {
        "fid_fashion_classifier": fake.frechet_distance(real),
        "fid_fashion_classifier_samples": [fake.count, real.count],
    }
    n = min(config.inception_fid_samples, len(samples), len(test_images))
    if n >= 2:
        inception = InceptionFeatures(device=device)
        real = compute_stats(
            inception, test_images[:n], cache=out / f"fid_real_inception_{n}.npz", desc="real"
        )
        # Samples come grouped by class: interleave the classes so the first n are balanced.
        balanced = rearrange(torch.arange(len(samples)), "(c k) -> (k c)", c=num_classes)[:n]
        fake = compute_stats(inception, samples[balanced], desc="generated")
        metrics["fid_inception"] = fake.frechet_distance(real)
        metrics["fid_inception_samples"] = [n, n]
    else:
        metrics["fid_inception"] = None
        metrics["fid_inception_samples"] = [0, 0]
    return metrics


def read_config_json(path: Path) -> dict[str, Any]:
    """The recipe configuration saved in a run folder (``recipe.json``).

    Raises:
        CheckpointError: the file is missing, not JSON, or not an image-fashion configuration.
    """
    saved = read_json(path, "recipe configuration")
    if not isinstance(saved, dict) or not isinstance(saved.get("sampler"), dict):
        raise CheckpointError(f"{path} is not the configuration of an image-fashion run")
    return saved


def load_trained(
    run_dir: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[ImageRVQVAE, nn.Module, ImageFashionConfig]:
    """Rebuild the codec, the generator and the recipe configuration of a finished run.

    Args:
        run_dir: the run folder (``--out`` of training, on whatever device it trained).
        device: where the returned codec and generator live.
    """
    device = resolve_device(device)
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished image-fashion run (no recipe.json)")
    saved = read_config_json(run_dir / "recipe.json")
    codec_dir = finished_checkpoint(run_dir / "codec")
    codec = ImageRVQVAE(build_from_config(codec_dir, "codec", ImageCodecConfig))
    load_checkpoint(codec_dir, {"codec": codec})
    generator_dir = finished_checkpoint(run_dir / "generator")
    model = build_from_config(generator_dir, "network", lambda **fields: rebuild_generator(fields))
    load_checkpoint(generator_dir, {"generator": model})
    sampler = {k: v for k, v in saved["sampler"].items() if k != "schedule"}
    try:
        config = evolve(
            PRESETS["demo"],
            generator=saved.get("generator", "resgen"),
            guidance_scale=saved["guidance_scale"],
            sampler=SamplerConfig(**sampler),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{run_dir / 'recipe.json'} is not usable: {error!r}") from error
    return codec.to(device).eval(), model.to(device).eval(), config


def configure(
    preset: str, *, generator: str | None = None, depth: int | None = None
) -> ImageFashionConfig:
    """A preset with the command line's overrides: the generator kind and the codec's depth."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    config = PRESETS[preset]
    if generator is not None:
        config = evolve(config, generator=generator)
    if depth is not None:
        config = evolve(config, codec=evolve(config.codec, depth=depth))
    return config

"""Recipe ``imagenet``: class-conditional ResGen on ImageNet 256x256 (the paper's setting).

Stages (each resumable, each under its own folder of ``--out``; every one runs on every process
of a ``torchrun`` world, rank 0 writing):

1. ``data``: list ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*``
   (:mod:`~resgen.data.image_folder`); a missing root, no class folder, an empty class folder or
   classes that differ between the splits end the run before anything is written;
2. ``codec``: train the RQ-VAE tokenizer (:class:`~resgen.codecs.image_tokenizer.ImageTokenizer`:
   ADM centre crop, 8x8 grid, one shared codebook) on crops decoded as batches are drawn, or load
   the one ``tokenizer`` names;
3. ``codes``: tokenize the training set once into a code store (:mod:`~resgen.data.code_store`;
   with ``flip_view`` also each image's mirror), every process a share of it; corrupt files are
   skipped, grayscale/CMYK images converted, small images upscaled, all counted;
4. ``generator``: train ``--model resgen|token|ar`` on the store (micro-batches of a stated global
   batch, weights averaged for sampling);
5. ``samples``: exactly ``samples_per_class`` images per class from the averaged weights, as PNG
   files ``samples/<class>/<n>.png``, one ``samples.npz`` (``arr_0`` images, ``arr_1`` labels),
   and a grid ``samples.png``;
6. ``evaluate``: FID, Inception Score (softmax probe, see :mod:`~resgen.eval.adm_reference`),
   precision and recall against the ADM reference batch ``reference`` (a path the user gives with
   ``--reference``; without one these figures are ``null``), with the offline Inception; then
   ``metrics.json`` and ``loss.png``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from attrs import asdict, evolve, field, frozen, validators
from jaxtyping import Float, Int, UInt8
from torch import Tensor, nn
from tqdm.auto import tqdm

from resgen.codecs.image_tokenizer import ImageTokenizer, ImageTokenizerConfig
from resgen.data.code_store import CodeStore, StoreMeta, weights_hash, write_code_store
from resgen.data.image_folder import (
    STATUS_NAMES,
    UNREADABLE,
    FolderSplit,
    check_same_classes,
    read_cropped,
    scan_split,
)
from resgen.diffusion.loss import ResGenObjective
from resgen.diffusion.sampler import SamplerConfig
from resgen.diffusion.schedules import CosineSchedule
from resgen.recipes.generators import (
    GENERATOR_KINDS,
    build_generator,
    generator_loss,
    make_sampler,
    objective_target_scales,
)
from resgen.training import distributed
from resgen.training.checkpoint import (
    build_from_config,
    finished_checkpoint,
    load_checkpoint,
    read_json,
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

__all__ = [
    "ImageNetConfig",
    "PRESETS",
    "configure",
    "evaluate",
    "paper_generator_parameters",
    "read_images",
    "read_samples",
    "read_splits",
    "run",
    "sample_images",
    "shared_features",
    "store_meta",
    "tokenize",
    "tokenizer_checkpoint",
    "train_codec",
    "train_generator",
]


@frozen
class ImageNetConfig:
    """Everything the recipe needs; a preset is one of these.

    Attributes:
        codec: the tokenizer (image size = the crop, 8x8 grid for 256 with five stages).
        codec_stage: its training schedule.
        tokenizer: a finished tokenizer checkpoint folder (``config.json`` with a ``codec``
            entry and ``codec.safetensors``) to use instead of training one; ``None`` trains.
        flip_view: also tokenize each training image's horizontal mirror (a second view).
        generator: ``resgen``, ``token`` or ``ar`` (:mod:`resgen.recipes.generators`).
        network: width, layers, heads and kind-specific sizes of the generator.
        objective: ResGen's training objective.
        generator_stage: its schedule (``batch_size`` is the global batch over all processes;
            ``micro_batches`` must be a multiple of the number of processes).
        sampler: sampling options (steps, temperatures).
        guidance_scale: classifier-free guidance scale (1 = none).
        samples_per_class: images sampled per class for the evaluation (50 by convention).
        sample_batch: images sampled at once (one process's share is whole batches).
        reference: the ADM reference batch ``.npz`` to evaluate against; ``None`` skips FID,
            IS, precision and recall.
        probe_per_class: validation images per class that fit the Inception Score's probe.
        decode_threads: threads decoding JPEGs for the codec's batches.
        tokenize_batch: images per chunk of the code store (the unit shared among processes).
        seed: seed of every random choice.
    """

    codec: ImageTokenizerConfig = field(factory=ImageTokenizerConfig)
    codec_stage: StageSpec = field(
        factory=lambda: StageSpec(
            steps=200_000,
            batch_size=64,
            lr=2e-4,
            warmup=2000,
            micro_batches=8,
            checkpoint_every=5000,
            precision="bfloat16",
        )
    )
    tokenizer: str | None = None
    flip_view: bool = True
    generator: str = field(default="resgen", validator=validators.in_(GENERATOR_KINDS))
    network: dict[str, Any] = field(
        factory=lambda: {
            "width": 1024,
            "layers": 28,
            "heads": 16,
            "components": 320,
            "head_rank": 256,
            "depth_layers": 4,
        }
    )
    objective: ResGenObjective = field(factory=lambda: ResGenObjective(kind="nll"))
    generator_stage: StageSpec = field(
        factory=lambda: StageSpec(
            steps=500_000,
            batch_size=256,
            lr=4e-4,
            weight_decay=0.05,
            warmup=5000,
            checkpoint_every=5000,
            micro_batches=8,
            precision="bfloat16",
            ema_decay=0.9999,
        )
    )
    sampler: SamplerConfig = field(factory=lambda: SamplerConfig(steps=64, temperature=1.0))
    guidance_scale: float = field(default=3.0, validator=validators.ge(0.0))
    samples_per_class: int = field(default=50, validator=validators.ge(1))
    sample_batch: int = field(default=250, validator=validators.ge(1))
    reference: str | None = None
    probe_per_class: int = field(default=10, validator=validators.ge(1))
    decode_threads: int = field(default=8, validator=validators.ge(1))
    tokenize_batch: int = field(default=256, validator=validators.ge(1))
    seed: int = 0


_PAPER = ImageNetConfig()
PRESETS: dict[str, ImageNetConfig] = {
    # The paper's sizes: a 574,826,048-parameter generator (D = 8) on a shared 16,384 x 256
    # codebook; the schedule is ours (the paper does not state it).
    "paper-d8": _PAPER,
    "paper-d16": evolve(_PAPER, codec=evolve(_PAPER.codec, depth=16)),
    # About one GPU-day (see the training-at-scale guide for the estimate): a 16-layer generator.
    "gpu-day": evolve(
        _PAPER,
        network={**_PAPER.network, "layers": 16, "components": 256},
        generator_stage=evolve(_PAPER.generator_stage, steps=300_000),
        codec_stage=evolve(_PAPER.codec_stage, steps=50_000),
    ),
    # A tiny folder on a CPU, 1 or 2 processes, a couple of minutes.
    "smoke": ImageNetConfig(
        codec=ImageTokenizerConfig(image_size=32, widths=(16, 16), latent_dim=8, codes=64, depth=4),
        codec_stage=StageSpec(
            steps=12, batch_size=16, lr=3e-3, checkpoint_every=6, micro_batches=2
        ),
        network={
            "width": 32,
            "layers": 1,
            "heads": 2,
            "components": 4,
            "head_rank": 16,
            "depth_layers": 1,
        },
        generator_stage=StageSpec(
            steps=16,
            batch_size=16,
            lr=1e-3,
            checkpoint_every=8,
            micro_batches=2,
            ema_decay=0.9,
        ),
        sampler=SamplerConfig(steps=4),
        samples_per_class=50,
        sample_batch=50,
        probe_per_class=5,
        decode_threads=2,
        tokenize_batch=16,
    ),
}

_TRAINING_FIELDS = (
    "codec",
    "codec_stage",
    "tokenizer",
    "flip_view",
    "generator",
    "network",
    "objective",
    "generator_stage",
    "seed",
)
"""Fields whose change invalidates trained stages of a run folder."""
_STAGES = ("codec_stage", "generator_stage")


def _config_dict(config: ImageNetConfig) -> dict[str, Any]:
    out = asdict(config, recurse=True)
    out["sampler"]["schedule"] = type(config.sampler.schedule).__name__
    out["codec"] = config.codec.to_dict()
    return json.loads(json.dumps(out))


def paper_generator_parameters(config: ImageNetConfig, num_classes: int = 1000) -> int:
    """Parameters of the preset's generator, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        codec = ImageTokenizer(config.codec)
        model, _ = build_generator(
            config.generator,
            codec.quantizer,
            codec.length,
            num_classes,
            config.network,
            config.objective,
            target_scales=[1.0] * (codec.depth + 1),
        )
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- stage 1: data
def read_splits(root: str | Path) -> tuple[FolderSplit, FolderSplit]:
    """The training and validation splits of ``root``, checked (see :func:`scan_split`)."""
    train, val = scan_split(root, "train"), scan_split(root, "val")
    check_same_classes(train, val)
    return train, val


def read_images(
    files: list[Path], size: int, threads: int
) -> tuple[UInt8[Tensor, "kept 3 size size"], Int[Tensor, " kept"], Int[Tensor, " files"]]:
    """Decode and crop ``files``; returns the readable ones' pixels, their positions in
    ``files`` and every file's status (:data:`~resgen.data.image_folder.STATUS_NAMES`)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda path: read_cropped(path, size), files))
    kept = [i for i, (pixels, _) in enumerate(results) if pixels is not None]
    pixels = np.stack([results[i][0] for i in kept]) if kept else np.zeros((0, size, size, 3))
    return (
        torch.from_numpy(pixels.astype(np.uint8)).permute(0, 3, 1, 2).contiguous(),
        torch.tensor(kept, dtype=torch.long),
        torch.tensor([status for _, status in results], dtype=torch.long),
    )


def _unit(pixels: UInt8[Tensor, "n 3 h w"]) -> Float[Tensor, "n 3 h w"]:
    return pixels.float() / 127.5 - 1.0


# --------------------------------------------------------------------------- stage 2: codec
def tokenizer_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder a ``--tokenizer`` names: a checkpoint folder itself, a stage folder
    (its ``final/``) or a run folder of this recipe (its ``codec/final/``).

    Raises:
        CheckpointError: none of these holds a finished checkpoint.
    """
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    if (path / "codec").is_dir():
        return finished_checkpoint(path / "codec")
    return finished_checkpoint(path)


def train_codec(
    config: ImageNetConfig, train: FolderSplit | None, folder: Path, device: torch.device
) -> tuple[ImageTokenizer, list[tuple[int, float]]]:
    """Train the tokenizer on random crops of ``train`` (or load ``config.tokenizer``, when
    ``train`` is not read)."""
    if config.tokenizer is not None:
        found = tokenizer_checkpoint(config.tokenizer)
        codec = ImageTokenizer(build_from_config(found, "codec", ImageTokenizerConfig))
        load_checkpoint(found, {"codec": codec})
        if codec.config.image_size != config.codec.image_size:
            raise ValueError(
                f"the tokenizer {found} reads {codec.config.image_size}-pixel images, the "
                f"preset crops to {config.codec.image_size}"
            )
        return codec.to(device).eval(), []
    if train is None:
        raise ValueError("training the tokenizer needs the training split")
    torch.manual_seed(config.seed)
    codec = ImageTokenizer(config.codec).to(device)
    spec, files = config.codec_stage, list(train.files)

    def loss_fn(step: int, part: BatchPart | None = None) -> tuple[Tensor, dict[str, float]]:
        idx = torch.randint(
            len(files), (spec.batch_size,), generator=batch_generator(config.seed, step)
        )
        if part is not None:
            idx = part.rows(idx)
        pixels, _, _ = read_images(
            [files[i] for i in idx], config.codec.image_size, config.decode_threads
        )
        if not len(pixels):  # every file of this part unreadable: a zero loss keeps DDP in step
            return sum(p.sum() * 0.0 for p in codec.parameters()), {}
        loss, out = codec.loss(_unit(pixels).to(device))
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
    return codec.eval(), result.history


# --------------------------------------------------------------------------- stage 3: codes
def store_meta(config: ImageNetConfig, codec: ImageTokenizer) -> StoreMeta:
    """What the code store of this run must have been made with."""
    return StoreMeta(
        tokenizer=f"ImageTokenizer {json.dumps(codec.config.to_dict(), sort_keys=True)}",
        tokenizer_hash=weights_hash(codec),
        depth=codec.depth,
        codes=codec.codes,
        length=codec.length,
        crop=f"adm-center-{config.codec.image_size}",
        views=("identity", "hflip") if config.flip_view else ("identity",),
    )


def tokenize(
    config: ImageNetConfig,
    codec: ImageTokenizer,
    train: FolderSplit,
    path: Path,
    device: torch.device,
) -> CodeStore:
    """Tokenize every training image (and its mirror) into the code store at ``path``."""
    meta = store_meta(config, codec)
    labels = torch.tensor(train.labels, dtype=torch.long)

    def encode(start: int, stop: int) -> tuple[Tensor, Tensor, Tensor]:
        pixels, kept, status = read_images(
            list(train.files[start:stop]), config.codec.image_size, config.decode_threads
        )
        codes = torch.zeros(
            stop - start, len(meta.views), meta.length, meta.depth, dtype=torch.long
        )
        if len(kept):
            images = _unit(pixels).to(device)
            views = [images, images.flip(-1)][: len(meta.views)]
            codes[kept] = torch.stack([codec.encode(v).cpu() for v in views], dim=1)
        return codes, labels[start:stop], status.to(torch.uint8)

    bar = tqdm(total=len(train.files), desc="codes", disable=not distributed.is_main())
    store = write_code_store(
        path,
        meta,
        len(train.files),
        encode,
        chunk=config.tokenize_batch,
        status_names=STATUS_NAMES,
        skipped_from=UNREADABLE,
        progress=lambda n: bar.update(n * distributed.world_size()),
    )
    bar.close()
    return store


# --------------------------------------------------------------------------- stage 4: generator
def train_generator(
    config: ImageNetConfig,
    codec: ImageTokenizer,
    store: CodeStore,
    num_classes: int,
    folder: Path,
    device: torch.device,
) -> tuple[nn.Module, list[tuple[int, float]]]:
    """Train the chosen generator on the store's (example, view) pairs."""
    codec.to(device)
    usable, views = store.usable(), store.views
    if not len(usable):
        raise ValueError(f"the code store {store.path} holds no usable image")
    torch.manual_seed(config.seed + 2)
    sample = store.tokens(usable[:4096], torch.zeros(min(4096, len(usable)), dtype=torch.long))
    model, network = build_generator(
        config.generator,
        codec.quantizer,
        codec.length,
        num_classes,
        config.network,
        config.objective,
        target_scales=objective_target_scales(config.objective, codec.quantizer, sample),
    )
    model.to(device)
    spec, schedule = config.generator_stage, CosineSchedule()

    def loss_fn(step: int, part: BatchPart | None = None) -> tuple[Tensor, dict[str, float]]:
        gen = batch_generator(config.seed + 2, step)
        pick = torch.randint(len(usable) * views, (spec.batch_size,), generator=gen)
        noise = gen if device.type == "cpu" else batch_generator(config.seed + 2, step, device)
        if part is not None:
            pick, noise = part.rows(pick), part.generator(config.seed + 2, device)
        rows = usable[pick // views]
        tokens = store.tokens(rows, pick % views).to(device)
        labels = store.labels_of(rows).to(device)
        loss = generator_loss(
            config.generator,
            model,
            codec.quantizer,
            tokens,
            labels,
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
    return model.eval(), result.history


# --------------------------------------------------------------------------- stage 5: samples
def sample_images(
    config: ImageNetConfig,
    codec: ImageTokenizer,
    model: nn.Module,
    num_classes: int,
    folder: Path,
    device: torch.device,
) -> Int[Tensor, " n"]:
    """Write ``samples_per_class`` PNGs per class under ``folder`` (each process a share of the
    batches; batch ``k`` is seeded by ``(seed, k)``, so the images do not depend on the number
    of processes); returns the labels in file order. PNGs an interrupted run left are kept when
    the sampling settings (``folder/sampling.json``) are the same, else drawn again."""
    from PIL import Image

    from resgen.files import atomic_write

    labels = torch.arange(num_classes).repeat_interleave(config.samples_per_class)
    settings = _config_dict(config)
    settings = {k: settings[k] for k in ("sampler", "guidance_scale", "samples_per_class")}
    settings["sample_batch"], settings["seed"] = config.sample_batch, config.seed
    written = folder / "sampling.json"
    if distributed.is_main():  # samples of other settings (or another generator) go
        if written.is_file() and read_json(written, "sampling settings") != settings:
            shutil.rmtree(folder)
        write_json(written, settings)
    distributed.barrier()
    sampler = make_sampler(config.generator, config.sampler, config.guidance_scale)
    batches = range(0, len(labels), config.sample_batch)
    rank, world = distributed.rank(), distributed.world_size()
    mine = [start for k, start in enumerate(batches) if k % world == rank]
    for start in tqdm(mine, desc="sampling", disable=not distributed.is_main()):
        part = labels[start : start + config.sample_batch]
        names = [folder / f"{int(c):04d}" / f"{start + i:06d}.png" for i, c in enumerate(part)]
        if all(n.is_file() for n in names):
            continue  # written by an earlier, interrupted run
        generator = torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + start)
        with torch.no_grad():
            tokens = sampler.sample(
                model, codec.quantizer, part.to(device), codec.length, generator=generator
            )
            images = codec.decode(tokens).cpu()
        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        for name, array in zip(names, pixels, strict=True):
            atomic_write(name, lambda tmp, a=array: Image.fromarray(a).save(tmp, format="PNG"))
    distributed.barrier()
    return labels


def read_samples(
    folder: Path, labels: Int[Tensor, " n"], start: int = 0, stop: int | None = None
) -> UInt8[np.ndarray, "m h w 3"]:
    """The sampled PNGs ``start .. stop - 1`` (default: all) of :func:`sample_images`."""
    from PIL import Image

    stop = len(labels) if stop is None else min(stop, len(labels))
    return np.stack(
        [
            np.asarray(Image.open(folder / f"{int(labels[i]):04d}" / f"{i:06d}.png").convert("RGB"))
            for i in range(start, stop)
        ]
    )


# --------------------------------------------------------------------------- stage 6: evaluate
def shared_features(
    read: Callable[[int, int], UInt8[np.ndarray, "m h w 3"]],
    count: int,
    device: torch.device,
    batch: int = 50,
) -> Float[np.ndarray, "count 2048"]:
    """Inception pool3 features of ``count`` images, each process reading and computing a share
    of the batches (``read(start, stop)`` returns images ``start .. stop - 1``); every process
    gets all the features, in order."""
    from resgen.eval.features import InceptionFeatures

    inception = InceptionFeatures(device=device)
    rank, world = distributed.rank(), distributed.world_size()
    starts = list(range(0, count, batch))
    padded = -(-len(starts) // world) * world
    out = torch.zeros(padded // world, batch, 2048)
    for slot, k in enumerate(range(rank, padded, world)):
        if k < len(starts):
            chunk = torch.from_numpy(read(starts[k], starts[k] + batch)).permute(0, 3, 1, 2)
            out[slot, : len(chunk)] = inception(_unit(chunk))
    gathered = torch.stack(distributed.all_gather_equal(out), dim=1)  # [slot, rank, batch, 2048]
    flat = gathered.reshape(-1, batch, 2048)[: len(starts)].reshape(-1, 2048)
    return flat[:count].numpy()


def evaluate(
    config: ImageNetConfig,
    samples: Callable[[int, int], UInt8[np.ndarray, "m h w 3"]],
    count: int,
    val: FolderSplit,
    out: Path,
    device: torch.device,
) -> dict[str, Any]:
    """FID, Inception Score (probe), precision and recall of the ``count`` samples
    (``samples(start, stop)`` reads some) against the reference batch."""
    from resgen.eval.adm_reference import fit_probe, read_reference
    from resgen.eval.frechet import frechet_distance
    from resgen.eval.image_metrics import inception_score, precision_recall

    if config.reference is None:
        return {
            "fid": None,
            "inception_score": None,
            "precision": None,
            "recall": None,
            "evaluation": "no --reference batch given",
        }
    reference = read_reference(config.reference)
    fake = shared_features(samples, count, device)
    cache = out / "reference_features.npy"
    if cache.is_file() and np.load(cache).shape[0] == len(reference.images):
        real = np.load(cache)
    else:
        images = reference.images
        real = shared_features(lambda a, b: images[a:b], len(images), device)
        if distributed.is_main():
            from resgen.files import atomic_write

            def write_features(tmp: Path) -> None:
                with open(tmp, "wb") as file:
                    np.save(file, real)

            atomic_write(cache, write_features)
    probe_files, probe_labels = [], []
    for label in range(len(val.classes)):
        chosen = [f for f, y in zip(val.files, val.labels, strict=True) if y == label]
        probe_files += chosen[: config.probe_per_class]
        probe_labels += [label] * len(chosen[: config.probe_per_class])
    pixels, kept, _ = read_images(probe_files, config.codec.image_size, config.decode_threads)
    probe_pixels = pixels.permute(0, 2, 3, 1).numpy()
    probe_feats = shared_features(lambda a, b: probe_pixels[a:b], len(probe_pixels), device)
    probe = fit_probe(probe_feats, np.asarray(probe_labels)[kept.numpy()], len(val.classes))
    with torch.no_grad():
        probs = probe(torch.from_numpy(fake)).float()
    score = inception_score(probs, splits=min(10, count))
    pr = precision_recall(real, fake, k=3)
    return {
        "fid": frechet_distance(
            fake.astype(np.float64).mean(0),
            np.cov(fake.astype(np.float64), rowvar=False),
            reference.mu,
            reference.sigma,
        ),
        "inception_score": score.mean,
        "inception_score_std": score.std,
        "inception_score_classifier": (
            f"softmax probe on Inception pool3 features of {len(kept)} val images (the offline "
            "Inception has no 1008-way head: not comparable with published IS)"
        ),
        "precision": pr.precision,
        "recall": pr.recall,
        "reference": str(config.reference),
        "reference_images": len(reference.images),
        "evaluated_samples": count,
    }


# --------------------------------------------------------------------------- the recipe
def run(
    out_dir: str | Path,
    config: ImageNetConfig | None = None,
    *,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Run every stage into ``out_dir`` (resuming what is there) and return the metrics.

    Args:
        out_dir: the run folder.
        config: the recipe configuration (default: ``paper-d16``).
        data_dir: the image folder's root (``train/`` and ``val/`` inside); required.
        device: where to train, sample and evaluate; under torchrun ``cuda`` is each process's
            own GPU (``cuda:LOCAL_RANK``).

    Raises:
        ValueError: no ``data_dir``, a bad image folder, a bad device, or ``out_dir`` holds a
            run trained with another configuration.
        RunFolderInUseError: another process is writing ``out_dir``.
    """
    device = resolve_device(distributed.local_device(device))
    config = config or PRESETS["paper-d16"]
    if data_dir is None:
        raise ValueError("the imagenet recipe needs --data-dir ROOT (ROOT/train/<class>/...)")
    out = check_run_folder(out_dir)
    tick = time.perf_counter()
    train, val = read_splits(data_dir)  # before anything is written: a bad root leaves nothing
    with lock_run_folder(out):
        return _run(out, config, train, val, time.perf_counter() - tick, device)


def _run(
    out: Path,
    config: ImageNetConfig,
    train: FolderSplit,
    val: FolderSplit,
    data_seconds: float,
    device: torch.device,
) -> dict[str, Any]:
    """:func:`run` once the image folder is read and the run folder locked."""
    config_dict = _config_dict(config)
    if (out / "recipe.json").is_file():
        saved = with_new_stage_options(
            read_json(out / "recipe.json", "recipe configuration"), _STAGES
        )
        changed = sorted(k for k in _TRAINING_FIELDS if saved.get(k) != config_dict.get(k))
        if changed:
            raise ValueError(
                f"{out} holds a run trained with another configuration (differs in: "
                f"{', '.join(changed)}); use a new --out folder"
            )
    if distributed.is_main():
        write_json(out / "recipe.json", config_dict)
    num_classes = len(train.classes)
    wall: dict[str, float] = {"data": data_seconds}

    tick = time.perf_counter()
    codec, codec_history = train_codec(config, train, out / "codec", device)
    wall["codec"] = time.perf_counter() - tick

    tick = time.perf_counter()
    store = tokenize(config, codec, train, out / "codes", device)
    wall["codes"] = time.perf_counter() - tick

    tick = time.perf_counter()
    model, generator_history = train_generator(
        config, codec, store, num_classes, out / "generator", device
    )
    wall["generator"] = time.perf_counter() - tick

    tick = time.perf_counter()
    labels = sample_images(config, codec, model, num_classes, out / "samples", device)
    if distributed.is_main():  # the one .npz (all samples in memory: 9.8 GB for 50,000)
        from resgen.files import atomic_write

        def write_npz(tmp: Path) -> None:
            with open(tmp, "wb") as file:
                np.savez(file, arr_0=read_samples(out / "samples", labels), arr_1=labels.numpy())

        atomic_write(out / "samples.npz", write_npz)
        shown, per_row = min(10, num_classes), min(10, config.samples_per_class)
        first = [
            read_samples(
                out / "samples",
                labels,
                c * config.samples_per_class,
                c * config.samples_per_class + per_row,
            )
            for c in range(shown)
        ]
        grid = torch.from_numpy(np.concatenate(first)).permute(0, 3, 1, 2).float() / 127.5 - 1
        save_image_grid(grid, out / "samples.png", rows=shown)
    wall["samples"] = time.perf_counter() - tick

    tick = time.perf_counter()
    figures = evaluate(
        config,
        lambda start, stop: read_samples(out / "samples", labels, start, stop),
        len(labels),
        val,
        out,
        device,
    )
    wall["evaluate"] = time.perf_counter() - tick

    metrics = {
        **figures,
        "generator": config.generator,
        "depth": codec.depth,
        "classes": num_classes,
        "samples_per_class": config.samples_per_class,
        "sampling_steps": config.sampler.steps,
        "guidance_scale": config.guidance_scale,
        "generator_parameters": sum(p.numel() for p in model.parameters()),
        "generator_final_loss": generator_history[-1][1] if generator_history else None,
        "codec_final_loss": codec_history[-1][1] if codec_history else None,
        "train_images": len(train.files),
        "train_images_by_status": {
            "ok": len(store.usable())
            - sum(v for k, v in store.counts.items() if k not in store.skipped),
            **store.counts,
        },
        "world_size": distributed.world_size(),
        "wall_seconds": wall,
    }
    if distributed.is_main():
        curves = {"codec": codec_history, "generator": generator_history}
        if any(curves.values()):
            save_loss_plot({k: v for k, v in curves.items() if v}, out / "loss.png")
        write_json(out / "metrics.json", metrics)
    distributed.barrier()
    return metrics


def configure(
    preset: str, *, generator: str | None = None, depth: int | None = None
) -> ImageNetConfig:
    """A preset with the command line's overrides: the generator kind and the codec's depth."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    config = PRESETS[preset]
    if generator is not None:
        config = evolve(config, generator=generator)
    if depth is not None:
        config = evolve(config, codec=evolve(config.codec, depth=depth))
    return config

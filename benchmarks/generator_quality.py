"""ResGen against its baselines on the same Fashion-MNIST tokens, at RVQ depths 8 and 16.

One image codec of depth 16 is trained; its tokens cut to the first 8 depths are the depth-8
tokens (residual quantization is greedy, so they are exactly what a depth-8 prefix of the codec
writes). On those tokens every generator trains with the same width, blocks, steps, batch and
data order, for each training seed:

- ``resgen``: the library's default (Jensen objective, beta = 1, per-count target scales,
  regression weight 0.1; guidance on the mixture logits);
- ``token``: token-level masked prediction; ``ar``: the autoregressive RQ-Transformer;
- ablations of ResGen (first seed only): ``resgen-unbalanced`` (regression weight 1),
  ``resgen-unnormalized`` (no per-count target scales, regression weight 1), ``resgen-clam``
  (CLaM-TTS's soft-responsibility bound) and, on trained networks without retraining,
  ``resgen-hidden-guidance`` (guidance on the hidden state, as before) and ``resgen-before``
  (the method as it stood: no target scales, weight 1, guidance on the hidden state).

Each model's classifier-free guidance scale is chosen on a held-out sweep (its own sampling seed,
best class accuracy; ties go to the smaller scale; with ``sweep_first_seed_only`` later seeds use
the first seed's choice); then the preset's ``eval_samples`` images per seed are
scored: class accuracy and the FID of the bundled classifier's features against the 10,000 test
images, each with a 95 % percentile-bootstrap interval over the generated images of all seeds.
Two diagnostics run on the trained ResGen networks: how the predicted scale of the true
component compares with its mean's actual error at every mask count, and how often guidance
keeps the sampled component equal to the depth-0 token it writes.

    python benchmarks/generator_quality.py --out runs/quality                  # CPU, ~1.5 h
    python benchmarks/generator_quality.py --out runs/quality --preset smoke   # a minute

The default ``cpu-fast`` preset trains every row at both depths for two seeds (800 steps); the
``cpu`` preset (1,200 steps, a guidance sweep per seed) made the single-seed tables of
``docs/results.md`` and takes about 2 h per seed.

Every stage is cached in ``--out``, each seed's evaluation too: re-running the command resumes,
and ``--merge`` adds rows to an earlier table instead of replacing it.
The table is printed, and written with the command, date and git commit to ``--json`` (default
``docs/results/generator_quality.json``).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from attrs import evolve, frozen
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from resgen.codecs import ImageCodecConfig, ImageRVQVAE
from resgen.data.fashion_mnist import load_fashion_mnist
from resgen.diffusion.guidance import ClassifierFreeGuidance
from resgen.diffusion.loss import ResGenObjective
from resgen.diffusion.masking import sample_training_counts, split_embeddings
from resgen.diffusion.sampler import GuidedPasses, SamplerConfig, guided_mixture
from resgen.diffusion.schedules import CosineSchedule
from resgen.eval.bootstrap import ratio_interval
from resgen.eval.frechet import FeatureStats
from resgen.eval.provenance import git_commit
from resgen.files import atomic_write
from resgen.quantizers.residual_vq import ResidualVQ
from resgen.recipes.generators import (
    build_generator,
    generator_loss,
    make_sampler,
    objective_target_scales,
)
from resgen.recipes.image_fashion import (
    NUM_CLASSES,
    ImageFashionConfig,
    train_classifier,
    train_codec,
)
from resgen.training.plots import save_image_grid
from resgen.training.trainer import StageSpec, batch_generator, resolve_device, run_stage

_DEFAULT_JSON = Path(__file__).resolve().parents[1] / "docs" / "results" / "generator_quality.json"


@frozen
class Preset:
    """One size of the comparison."""

    codec: ImageCodecConfig
    codec_stage: StageSpec
    classifier_stage: StageSpec
    network: dict[str, Any]
    generator_stage: StageSpec
    sampler: SamplerConfig
    scales: tuple[float, ...]
    sweep_samples: int
    eval_samples: int
    depths: tuple[int, ...] = (8, 16)
    sweep_first_seed_only: bool = False
    """Later seeds reuse the scale the first seed's sweep chose (their images are all scored)."""
    train_subset: int | None = None
    diagnostic_images: int = 512
    sample_batch: int = 250


_CPU = Preset(
    codec=ImageCodecConfig(depth=16),
    codec_stage=StageSpec(steps=1000, batch_size=128, lr=2e-3, warmup=50),
    classifier_stage=StageSpec(steps=600, batch_size=128, lr=2e-3, warmup=50),
    network={"width": 128, "layers": 4, "heads": 4, "head_rank": 128, "depth_layers": 2},
    generator_stage=StageSpec(
        steps=1200, batch_size=64, lr=1e-3, weight_decay=0.01, warmup=100, checkpoint_every=400
    ),
    sampler=SamplerConfig(steps=16, temperature=0.5, confidence="mixture"),
    scales=(1.0, 2.0, 3.0, 4.0),
    sweep_samples=200,
    eval_samples=500,
)
PRESETS = {
    # Every row at both depths over two training seeds in under 2 h on two CPU cores: 800
    # generator steps, and one guidance sweep per row (on the first seed).
    "cpu-fast": evolve(
        _CPU,
        generator_stage=evolve(_CPU.generator_stage, steps=800),
        scales=(2.0, 3.0, 4.0, 5.0),
        sweep_samples=150,
        eval_samples=400,
        sweep_first_seed_only=True,
    ),
    # The single-seed tables of docs/results.md (1,200 steps; a sweep per seed): hours per seed.
    "cpu": _CPU,
    "smoke": Preset(
        codec=ImageCodecConfig(hidden=16, latent_dim=8, codes=32, depth=4),
        codec_stage=StageSpec(steps=20, batch_size=32, lr=3e-3),
        classifier_stage=StageSpec(steps=10, batch_size=32, lr=2e-3),
        network={"width": 32, "layers": 1, "heads": 2, "head_rank": 16, "depth_layers": 1},
        generator_stage=StageSpec(steps=10, batch_size=16, lr=1e-3),
        sampler=SamplerConfig(steps=4, temperature=0.5, confidence="mixture"),
        scales=(1.0, 3.0),
        sweep_samples=20,
        eval_samples=20,
        depths=(2, 4),
        sweep_first_seed_only=True,
        train_subset=500,
        diagnostic_images=32,
    ),
}


@frozen
class Trained:
    """A training configuration: generator kind and (for ResGen) objective."""

    kind: str
    objective: ResGenObjective | None = None


@frozen
class Row:
    """A row of the table: a trained configuration and how it is sampled."""

    trained: str
    guidance: str = "logits"
    all_seeds: bool = False


_DEFAULT = ImageFashionConfig().objective  # the library's default objective
TRAINED = {
    "resgen": Trained("resgen", _DEFAULT),
    "resgen-unbalanced": Trained("resgen", evolve(_DEFAULT, regression_weight=1.0)),
    "resgen-unnormalized": Trained(
        "resgen", evolve(_DEFAULT, normalize_targets=False, regression_weight=1.0)
    ),
    "resgen-clam": Trained("resgen", ResGenObjective(kind="clam", normalize_targets=True)),
    "token": Trained("token"),
    "ar": Trained("ar"),
}
ROWS = {
    "resgen": Row("resgen", all_seeds=True),
    "token": Row("token", all_seeds=True),
    "ar": Row("ar", all_seeds=True),
    "resgen-hidden-guidance": Row("resgen", guidance="hidden"),
    "resgen-unbalanced": Row("resgen-unbalanced"),
    "resgen-unnormalized": Row("resgen-unnormalized"),
    "resgen-before": Row("resgen-unnormalized", guidance="hidden"),
    "resgen-clam": Row("resgen-clam"),
}


# --------------------------------------------------------------------------- shared stages
def shared_stages(
    preset: Preset, out: Path, data_dir: str | None, device: torch.device
) -> dict[str, Any]:
    """Codec (deepest depth), classifier, tokens and the test set's classifier features."""
    recipe = ImageFashionConfig(
        codec=preset.codec,
        codec_stage=preset.codec_stage,
        classifier_stage=preset.classifier_stage,
    )
    train_x, train_y = load_fashion_mnist("train", data_dir)
    test_x, test_y = load_fashion_mnist("test", data_dir)
    if preset.train_subset:
        train_x, train_y = train_x[: preset.train_subset], train_y[: preset.train_subset]
    codec, _, codec_seconds = train_codec(recipe, train_x, out / "codec", device=device)
    classifier, _, classifier_seconds = train_classifier(
        recipe, train_x, train_y, out / "classifier", device=device
    )
    cache = out / "tokens.safetensors"
    if cache.is_file():
        tokens = load_file(str(cache))["tokens"].long()
    else:
        with torch.no_grad():
            tokens = torch.cat(
                [
                    codec.encode(train_x[i : i + 1000].to(device)).cpu()
                    for i in range(0, len(train_x), 1000)
                ]
            )
        save_file({"tokens": tokens.to(torch.int16).contiguous()}, str(cache))
    with torch.no_grad():
        test_tokens = codec.encode(test_x[: preset.diagnostic_images].to(device)).cpu()
        test_labels = test_y[: preset.diagnostic_images]
        test_features = torch.cat(
            [
                classifier.features(test_x[i : i + 1000].to(device)).cpu()
                for i in range(0, len(test_x), 1000)
            ]
        )
    return {
        "codec": codec.eval(),
        "classifier": classifier.eval(),
        "tokens": tokens,
        "labels": train_y,
        "test_tokens": test_tokens,
        "test_labels": test_labels,
        "test_stats": FeatureStats.from_features(test_features, "classifier"),
        "stage_seconds": {"codec": codec_seconds, "classifier": classifier_seconds},
        "test_accuracy": float(
            (classifier(test_x[:2000].to(device)).argmax(-1).cpu() == test_y[:2000]).float().mean()
        ),
    }


def train_one(
    name: str,
    depth: int,
    seed: int,
    preset: Preset,
    shared: dict[str, Any],
    out: Path,
    device: torch.device,
) -> tuple[nn.Module, ResidualVQ, float]:
    """Train (or load) the ``name`` configuration on the first ``depth`` depths' tokens."""
    trained = TRAINED[name]
    quantizer = shared["codec"].quantizer.prefix(depth)
    tokens = shared["tokens"][..., :depth]
    labels = shared["labels"]
    scales = objective_target_scales(trained.objective, quantizer, tokens)
    torch.manual_seed(seed)
    model, network = build_generator(
        trained.kind,
        quantizer,
        shared["codec"].length,
        NUM_CLASSES,
        preset.network,
        trained.objective,
        target_scales=scales,
    )
    model.to(device)
    spec = preset.generator_stage
    schedule = CosineSchedule()

    def loss_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        # The batches depend on the seed alone: every configuration sees the same data order.
        gen = batch_generator(seed, step)
        idx = torch.randint(len(tokens), (spec.batch_size,), generator=gen)
        loss = generator_loss(
            trained.kind,
            model,
            quantizer,
            tokens[idx].to(device),
            labels[idx].to(device),
            schedule,
            gen if device.type == "cpu" else batch_generator(seed, step, device),
            trained.objective,
        )
        return loss, {}

    folder = out / f"{name}_d{depth}_s{seed}"
    result = run_stage(
        f"{name} D={depth} seed {seed}",
        folder,
        {"generator": model},
        spec,
        loss_fn,
        {"network": network},
        device=device,
    )
    return model.eval(), quantizer, result.seconds


# --------------------------------------------------------------------------- sampling
def sample_images(
    row: Row,
    model: nn.Module,
    quantizer: ResidualVQ,
    codec: ImageRVQVAE,
    preset: Preset,
    labels: Tensor,
    scale: float,
    seed: int,
    device: torch.device,
) -> Tensor:
    """Images ``[n, 1, 28, 28]`` for ``labels`` ``[n]`` from one row's sampler at ``scale``."""
    kind = TRAINED[row.trained].kind
    sampler = make_sampler(kind, evolve(preset.sampler, guidance=row.guidance), scale)
    generator = torch.Generator(device=device).manual_seed(seed)
    images = []
    for start in range(0, len(labels), preset.sample_batch):
        part = labels[start : start + preset.sample_batch].to(device)
        tokens = sampler.sample(model, quantizer, part, codec.length, generator=generator)
        images.append(codec.decode(tokens, partial=True).cpu())
    return torch.cat(images)


def balanced_labels(count: int) -> Tensor:
    """``count`` labels, as many of each class (class-major)."""
    return torch.arange(NUM_CLASSES).repeat_interleave(max(1, count // NUM_CLASSES))


@torch.no_grad()
def score(classifier: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image correctness ``[n]`` (float) and classifier features ``[n, feat]``."""
    device = next(classifier.parameters()).device
    correct, features = [], []
    for start in range(0, len(images), 500):
        batch = images[start : start + 500].to(device)
        correct.append((classifier(batch).argmax(-1).cpu() == labels[start : start + 500]).float())
        features.append(classifier.features(batch).cpu())
    return torch.cat(correct), torch.cat(features)


def fid_interval(
    features: Tensor, reference: FeatureStats, *, resamples: int = 200, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """FID of ``features`` ``[n, feat]`` against ``reference``, with a 95 % bootstrap interval
    over the generated images."""
    point = FeatureStats.from_features(features, "classifier").frechet_distance(reference)
    generator = torch.Generator().manual_seed(seed)
    draws = []
    for _ in range(resamples):
        idx = torch.randint(len(features), (len(features),), generator=generator)
        draws.append(
            FeatureStats.from_features(features[idx], "classifier").frechet_distance(reference)
        )
    low, high = torch.tensor(draws).quantile(torch.tensor([0.025, 0.975])).tolist()
    return point, (low, high)


# --------------------------------------------------------------------------- diagnostics
@torch.no_grad()
def calibration_by_count(
    model: nn.Module, quantizer: ResidualVQ, tokens: Tensor, labels: Tensor, seed: int = 0
) -> list[dict[str, float]]:
    """Per mask count ``k``: the target's RMS, the RMS error of the true component's mean and
    the component's predicted scale (all in code units, per dimension), and the cross-entropy
    of the mixture weights against the first masked token, on held-out tokens."""
    device = next(model.parameters()).device
    tokens, labels = tokens.to(device), labels.to(device)
    depth = quantizer.depth
    generator = torch.Generator(device=device).manual_seed(seed)
    counts = sample_training_counts(
        CosineSchedule(), len(tokens), tokens.shape[1], depth, generator=generator, device=device
    )
    visible, target = split_embeddings(quantizer.embed(tokens), counts)
    hidden = model.hidden(visible, counts, labels, None)
    first = tokens.gather(-1, (depth - counts).clamp(max=depth - 1)[..., None])[..., 0]
    components = model.mixture_components
    assigned = model.assigned_component(hidden, first.clamp(max=components - 1))
    unit = model.target_scale(counts)[..., None]
    error = (assigned.mean * unit - target).pow(2).mean(-1)
    predicted = (assigned.log_scale.exp() * unit).pow(2).mean(-1)
    log_weights = torch.log_softmax(model.mixture(hidden).logits.float(), -1)
    component_ce = -log_weights.gather(-1, first.clamp(max=components - 1)[..., None])[..., 0]
    rows = []
    for k in range(1, depth + 1):
        at = counts == k
        if int(at.sum()) == 0:
            continue
        rows.append(
            {
                "count": k,
                "positions": int(at.sum()),
                "target_rms": float(target[at].pow(2).mean().sqrt()),
                "mean_error_rms": float(error[at].mean().sqrt()),
                "predicted_scale": float(predicted[at].mean().sqrt()),
                "component_cross_entropy": float(component_ce[at].mean()),
            }
        )
    return rows


@torch.no_grad()
def guidance_fidelity(
    model: nn.Module, quantizer: ResidualVQ, scale: float, guidance: str, n: int, seed: int = 0
) -> float:
    """At the first sampling step (everything masked), how often the depth-0 token written
    from the sampled vector equals the sampled component (the codeword it stands for)."""
    device = next(model.parameters()).device
    labels = balanced_labels(n).to(device)
    length, depth = model.length, quantizer.depth
    counts = torch.full((len(labels), length), depth, device=device)
    visible = torch.zeros(len(labels), length, quantizer.dim, device=device)
    null = torch.full_like(labels, model.null_label)
    both = model.hidden(
        torch.cat([visible, visible]), torch.cat([counts, counts]), torch.cat([labels, null]), None
    )
    cond, uncond = both.chunk(2)
    passes = GuidedPasses(cond, uncond, ClassifierFreeGuidance(scale), 1 / 16)
    params = guided_mixture(model, passes, guidance)
    generator = torch.Generator(device=device).manual_seed(seed)
    probs = torch.softmax(params.logits.float(), -1)
    component = torch.multinomial(probs.flatten(0, 1), 1, generator=generator).view(probs.shape[:2])
    index = component[..., None, None].expand(-1, -1, 1, params.means.shape[-1])
    mean = params.means.float().gather(2, index)[:, :, 0] * model.target_scale(counts)[..., None]
    written = quantizer.quantize_from(mean, 0).tokens[..., 0]
    return float((written == component).float().mean())


# --------------------------------------------------------------------------- the comparison
def evaluate_seed(
    name: str,
    depth: int,
    seed: int,
    preset: Preset,
    shared: dict[str, Any],
    out: Path,
    device: torch.device,
    scale: float | None = None,
) -> tuple[dict[str, Any], Tensor, Tensor]:
    """One seed of one row: train (or load), sweep the guidance scale (unless ``scale`` is
    given), score ``eval_samples``.

    Returns the seed's record, and per evaluated image whether the classifier agreed
    ``[eval_samples]`` and its classifier features ``[eval_samples, features]``; all three are
    cached in ``out`` (a re-run reads them instead of sampling again).
    """
    cache = out / f"eval_{name}_d{depth}_s{seed}"
    if (cache / "record.json").is_file():
        tensors = load_file(str(cache / "scores.safetensors"))
        record = json.loads((cache / "record.json").read_text())
        return record, tensors["correct"], tensors["features"]
    row = ROWS[name]
    codec, classifier = shared["codec"], shared["classifier"]
    model, quantizer, train_seconds = train_one(
        row.trained, depth, seed, preset, shared, out, device
    )
    sweep_labels = balanced_labels(preset.sweep_samples)
    eval_labels = balanced_labels(preset.eval_samples)
    sweep = {}
    candidates = preset.scales if scale is None else ()  # a given scale needs no sweep
    for candidate in candidates:
        images = sample_images(
            row, model, quantizer, codec, preset, sweep_labels, candidate, 1000 + seed, device
        )
        sweep[candidate] = float(score(classifier, images, sweep_labels)[0].mean())
    best = max(sweep, key=lambda s: (round(sweep[s], 6), -s)) if scale is None else scale
    tick = time.perf_counter()
    images = sample_images(
        row, model, quantizer, codec, preset, eval_labels, best, 2000 + seed, device
    )
    seconds = (time.perf_counter() - tick) / len(eval_labels)
    correct, features = score(classifier, images, eval_labels)
    grid = torch.cat([images[c * len(images) // NUM_CLASSES :][:10] for c in range(NUM_CLASSES)])
    save_image_grid(grid, out / f"samples_{name}_d{depth}_s{seed}.png", rows=NUM_CLASSES)
    record = {
        "seed": seed,
        "sweep": {str(k): v for k, v in sweep.items()},
        "guidance_scale": best,
        "guidance_chosen_by": "sweep" if scale is None else "the first seed's sweep",
        "class_accuracy": float(correct.float().mean()),
        "train_seconds": train_seconds,
        "seconds_per_image": seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    cache.mkdir(parents=True, exist_ok=True)
    save_file(
        {"correct": correct.contiguous(), "features": features.contiguous()},
        str(cache / "scores.safetensors"),
    )
    (cache / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    return record, correct, features


def evaluate_row(
    name: str,
    depth: int,
    seeds: list[int],
    preset: Preset,
    shared: dict[str, Any],
    out: Path,
    device: torch.device,
) -> dict[str, Any]:
    """:func:`evaluate_seed` for every seed, pooled: accuracy and FID with their intervals."""
    per_seed: list[dict[str, Any]] = []
    correct, features = [], []
    for seed in seeds:
        reuse = per_seed and preset.sweep_first_seed_only
        chosen = per_seed[0]["guidance_scale"] if reuse else None
        record, seed_correct, seed_features = evaluate_seed(
            name, depth, seed, preset, shared, out, device, scale=chosen
        )
        per_seed.append(record)
        correct.append(seed_correct)
        features.append(seed_features)
        print(json.dumps({"row": name, "depth": depth, **record}), flush=True)
    all_correct, all_features = torch.cat(correct), torch.cat(features)
    fid, fid_ci = fid_interval(all_features, shared["test_stats"])
    return {
        "row": name,
        "depth": depth,
        "seeds": seeds,
        "parameters": per_seed[0]["parameters"],
        "class_accuracy": float(all_correct.float().mean()),
        "class_accuracy_interval_95": list(ratio_interval(all_correct, resamples=2000)),
        "fid_classifier": fid,
        "fid_classifier_interval_95": list(fid_ci),
        "samples": len(all_correct),
        "seconds_per_image": sum(r["seconds_per_image"] for r in per_seed) / len(per_seed),
        "per_seed": per_seed,
    }


DIAGNOSED = ("resgen", "resgen-unbalanced", "resgen-unnormalized")
"""The trained ResGen configurations whose calibration by count the diagnostics compare."""


def diagnostics(
    depth: int,
    names: list[str],
    preset: Preset,
    shared: dict[str, Any],
    out: Path,
    device: torch.device,
) -> dict[str, Any]:
    """Calibration by count of the first seed's ResGen networks ``names`` (of
    :data:`DIAGNOSED`), and the guidance fidelity of the default one."""
    result: dict[str, Any] = {"depth": depth}
    for name in names:
        model, quantizer, _ = train_one(name, depth, 0, preset, shared, out, device)
        tokens = shared["test_tokens"][..., :depth]
        result[f"calibration_{name}"] = calibration_by_count(
            model, quantizer, tokens, shared["test_labels"]
        )
        if name == "resgen":
            result["guidance_fidelity"] = {
                f"{guidance}@{scale}": guidance_fidelity(
                    model, quantizer, scale, guidance, preset.sweep_samples
                )
                for guidance in ("logits", "hidden")
                for scale in (1.0, 3.0, 5.0)
            }
    return result


PROVENANCE = ("command", "date", "git_commit")
"""The fields of a run's record that say which command, when and which code made a row."""


def shared_fingerprint(
    tokens: Int[Tensor, "n length depth"], classifier: nn.Module
) -> dict[str, str]:
    """SHA-256 of the training tokens ``[n, length, depth]`` and of the classifier's weights:
    rows of one table must train on the same tokens and be scored by the same classifier."""
    token_hash = hashlib.sha256(tokens.to(torch.int16).contiguous().numpy().tobytes())
    weights_hash = hashlib.sha256()
    for name, value in sorted(classifier.state_dict().items()):
        weights_hash.update(name.encode())
        weights_hash.update(
            value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
        )
    return {"tokens": token_hash.hexdigest(), "classifier": weights_hash.hexdigest()}


def check_mergeable(previous: dict[str, Any], fingerprint: dict[str, str]) -> None:
    """Raise ``ValueError`` unless an earlier table's rows came from these tokens and classifier
    (its ``fingerprint`` equals :func:`shared_fingerprint` of this run)."""
    if "fingerprint" not in previous:
        raise ValueError(
            "the earlier table records no fingerprint of its tokens and classifier, so its rows "
            "cannot be shown to be comparable with this run's; write to a new --json"
        )
    differ = [k for k in fingerprint if previous["fingerprint"].get(k) != fingerprint[k]]
    if differ:
        raise ValueError(
            f"the earlier table's {' and '.join(differ)} differ from this run's (another --out "
            "or a retrained codec): its rows are not comparable; write to a new --json"
        )


def merge_records(
    previous: dict[str, Any], rows: list[dict[str, Any]], diagnosis: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """This run's rows and diagnostics, plus those of an earlier ``--json`` it did not redo
    (check first with :func:`check_mergeable` that they are comparable).

    An earlier row keeps the command, date and commit that produced it (under ``run``; rows
    written before rows carried them get the earlier file's top-level ones). Rows are ordered by
    depth, then as in :data:`ROWS`.
    """
    fresh = {(r["row"], r["depth"]) for r in rows}
    earlier_run = {k: previous[k] for k in PROVENANCE if k in previous}
    kept = [
        {"run": earlier_run, **r}
        for r in previous.get("rows", [])
        if (r["row"], r["depth"]) not in fresh
    ]
    order = list(ROWS)
    merged = sorted(kept + rows, key=lambda r: (r["depth"], order.index(r["row"])))
    redone = {d["depth"] for d in diagnosis}
    kept_diagnosis = [d for d in previous.get("diagnostics", []) if d["depth"] not in redone]
    return merged, sorted(kept_diagnosis + diagnosis, key=lambda d: d["depth"])


def _fmt_interval(value: float, interval: list[float], digits: int) -> str:
    return f"{value:.{digits}f} ({interval[0]:.{digits}f}-{interval[1]:.{digits}f})"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table."""
    lines = [
        "| model | D | seeds | guidance (per seed) | class accuracy (95 % CI) | FID, classifier "
        "features (95 % CI) | s / image |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        scales = ", ".join(f"{s['guidance_scale']:g}" for s in r["per_seed"])
        lines.append(
            f"| {r['row']} | {r['depth']} | {len(r['seeds'])} | {scales} | "
            f"{_fmt_interval(r['class_accuracy'], r['class_accuracy_interval_95'], 3)} | "
            f"{_fmt_interval(r['fid_classifier'], r['fid_classifier_interval_95'], 0)} | "
            f"{r['seconds_per_image']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of every stage")
    parser.add_argument("--preset", default="cpu-fast", choices=sorted(PRESETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--depths", nargs="+", type=int, default=None, help="default: preset's")
    parser.add_argument("--json", type=Path, default=_DEFAULT_JSON, help="where the table goes")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows (and diagnostics) of --json that this run does not produce",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    preset = PRESETS[args.preset]
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    # the code that runs, whatever is committed meanwhile
    commit = git_commit(Path(__file__).resolve().parent)
    shared = shared_stages(preset, args.out, args.data_dir, device)
    print(f"classifier test accuracy {shared['test_accuracy']:.3f}", flush=True)
    fingerprint = shared_fingerprint(shared["tokens"], shared["classifier"])
    previous = None
    if args.merge and args.json.is_file():
        previous = json.loads(args.json.read_text())
        try:  # before hours of training, not after
            check_mergeable(previous, fingerprint)
        except ValueError as error:
            raise SystemExit(f"error: cannot --merge into {args.json}: {error}") from None
    rows, diagnosis = [], []
    for depth in args.depths or preset.depths:
        for name in args.rows:
            seeds = args.seeds if ROWS[name].all_seeds else args.seeds[:1]
            rows.append(evaluate_row(name, depth, seeds, preset, shared, args.out, device))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_seed"}), flush=True)
        if "resgen" in args.rows:
            # the ablations' networks too when an earlier run of --out trained them
            first = args.seeds[0]
            names = [
                n
                for n in DIAGNOSED
                if n in args.rows or (args.out / f"{n}_d{depth}_s{first}" / "final").is_dir()
            ]
            diagnosis.append(diagnostics(depth, names, preset, shared, args.out, device))
    run = {
        "command": "python benchmarks/generator_quality.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit,
        "wall_seconds": time.perf_counter() - began,
    }
    for row in rows:
        row["run"] = {k: run[k] for k in PROVENANCE}
    if previous is not None:
        rows, diagnosis = merge_records(previous, rows, diagnosis)
    table = markdown_table(rows)
    print("\n" + table, flush=True)
    record = {
        **run,
        "preset": args.preset,
        "device": str(device),
        "classifier_test_accuracy": shared["test_accuracy"],
        # training time of the shared stages, also when this run read them from --out
        "shared_stage_seconds": shared["stage_seconds"],
        "fingerprint": fingerprint,
        "rows": rows,
        "diagnostics": diagnosis,
        "table": table,
    }
    text = json.dumps(record, indent=1) + "\n"
    atomic_write(args.json, lambda tmp: tmp.write_text(text))  # never half a table
    print(f"wrote {args.json} ({record['wall_seconds'] / 60:.1f} min)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

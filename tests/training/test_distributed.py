"""Training on two processes (torchrun, gloo on the CPU): the same updates as one process on the
same global batches, and an exact resume after one process is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import ddp_stage_worker as worker
import pytest
import torch
from safetensors.torch import load_file

from resgen.training.checkpoint import load_checkpoint
from resgen.training.distributed_checkpoint import METADATA
from resgen.training.trainer import BatchPart, StageSpec, run_stage

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(worker.__file__)
TIMEOUT_S = 240


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """Run ``args`` under ``torchrun --standalone --nproc_per_node nproc`` (one thread each)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(nproc), *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "final" / "generator.safetensors"))


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stage trained by two processes, uninterrupted."""
    folder = tmp_path_factory.mktemp("ddp") / "straight"
    done = torchrun(str(WORKER), str(folder))
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def test_two_processes_update_as_one_on_the_same_global_batches(
    two_process_run: Path, tmp_path: Path
) -> None:
    # One process computes both micro-batches of each step and accumulates g0/2 + g1/2; two
    # processes compute one each and DDP averages (g0 + g1)/2. Halving is exact in binary
    # floating point, so on one thread per process the sums agree to the bit (measured: a
    # largest difference of 0 after 12 AdamW steps). The bound allows 1e-6 for kernels whose
    # float32 rounding depends on the machine; the steps themselves move weights by > 1e-3.
    torch.set_num_threads(1)
    try:
        one = worker.train(tmp_path / "one")
    finally:
        torch.set_num_threads(2)
    two = _weights(two_process_run)
    assert set(two) == set(one.state_dict())
    worst = max(float((one.state_dict()[k] - v).abs().max()) for k, v in two.items())
    print(f"largest weight difference, 2 processes against 1: {worst:.3g}")
    assert worst <= 1e-6, worst
    torch.manual_seed(0)
    untrained = worker.build()[0].state_dict()
    moved = max(float((untrained[k] - v).abs().max()) for k, v in two.items())
    assert moved > 1e-3  # the stage did train: the tolerance is far below its updates


def test_a_killed_process_resumes_to_the_uninterrupted_weights(
    two_process_run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "killed"
    began = time.perf_counter()
    first = torchrun(str(WORKER), str(folder), "--kill-at", "9")
    assert first.returncode != 0  # rank 1 died with SIGKILL at step 9, torchrun ended rank 0
    assert "Signal 9" in first.stderr or "SIGKILL" in first.stderr, first.stderr[-3000:]
    assert (folder / "latest" / "config.json").is_file() and not (folder / "final").exists()
    again = torchrun(str(WORKER), str(folder), "--kill-at", "9")
    assert again.returncode == 0, again.stderr[-3000:]
    # Same world size, same arithmetic in the same order, every rank's random state restored
    # from the step-8 checkpoint: the resumed weights are bit-for-bit the uninterrupted ones.
    straight, resumed = _weights(two_process_run), _weights(folder)
    for key, value in straight.items():
        assert torch.equal(resumed[key], value), key
    assert time.perf_counter() - began < TIMEOUT_S


def test_micro_batches_must_be_shared_evenly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="equal micro-batches"):
        StageSpec(steps=1, batch_size=6, lr=1.0, micro_batches=4)
    part = BatchPart(step=3, index=1, count=2, batch_size=6)
    assert (part.start, part.stop) == (3, 6)
    assert torch.equal(part.rows(torch.arange(6)), torch.tensor([3, 4, 5]))
    with pytest.raises(ValueError, match="global batch of 6"):
        part.rows(torch.arange(4))
    a, b = part.generator(1), BatchPart(3, 0, 2, 6).generator(1)
    assert not torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    model = torch.nn.Linear(2, 1)
    spec = StageSpec(steps=2, batch_size=4, lr=0.1, micro_batches=2)

    def loss_fn(step: int, part: BatchPart) -> tuple[torch.Tensor, dict[str, float]]:
        x = torch.randn(part.stop - part.start, 2, generator=part.generator(0))
        return model(x).pow(2).mean(), {}

    result = run_stage("s", tmp_path / "m", {"m": model}, spec, loss_fn, {})
    assert [s for s, _ in result.history] == [0, 1] and result.world_size == 1


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stage trained by two processes with FSDP2, uninterrupted."""
    folder = tmp_path_factory.mktemp("fsdp") / "straight"
    done = torchrun(str(WORKER), str(folder), "--fsdp")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def test_fsdp_on_two_processes_updates_as_one(sharded_run: Path, tmp_path: Path) -> None:
    # FSDP2 reduce-scatters the gradients instead of all-reducing them; on the same micro-batches
    # the average of two halves is again exact (measured: 0). The final weights are the weight
    # average (EMA 0.8), gathered whole and written by rank 0 in the usual format.
    torch.set_num_threads(1)
    try:
        one = worker.train(tmp_path / "one", fsdp=True)
    finally:
        torch.set_num_threads(2)
    two = _weights(sharded_run)
    worst = max(float((one.state_dict()[k] - v).abs().max()) for k, v in two.items())
    print(f"largest weight difference, FSDP on 2 processes against 1: {worst:.3g}")
    assert worst <= 1e-6, worst
    state = load_checkpoint(sharded_run / "final", {}, training_state=True)
    assert [step for step, _ in state["validation"]] == [4, 8, 12]  # rank 0, weights gathered


def test_fsdp_resumes_exactly_after_a_kill_from_dcp_shards(
    sharded_run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "killed"
    first = torchrun(str(WORKER), str(folder), "--fsdp", "--kill-at", "9")
    assert first.returncode != 0
    assert (folder / "latest" / "config.json").is_file() and not (folder / "final").exists()
    # latest/ is a torch.distributed.checkpoint folder: one shard file per rank, the metadata as
    # JSON (no pickled .metadata), and no gathered weights
    files = {p.name for p in (folder / "latest").iterdir()}
    assert {"__0_0.distcp", "__1_0.distcp", METADATA, "state.json"} <= files, files
    assert ".metadata" not in files and "generator.safetensors" not in files, files
    shards = json.loads((folder / "latest" / METADATA).read_text())["tensors"]
    weight = next(v for k, v in shards.items() if k.startswith("model/") and len(v["size"]) == 2)
    assert len(weight["chunks"]) == 2  # a matrix is split over both ranks
    assert any(k.startswith("optimizer/") for k in shards)
    assert any(k.startswith("average/") for k in shards)
    again = torchrun(str(WORKER), str(folder), "--fsdp", "--kill-at", "9")
    assert again.returncode == 0, again.stderr[-3000:]
    straight, resumed = _weights(sharded_run), _weights(folder)
    for key, value in straight.items():
        assert torch.equal(resumed[key], value), key


def test_local_device_gives_cuda_the_process_s_gpu_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from resgen.training import distributed

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert distributed.local_device("cuda") == torch.device("cuda")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.local_device("cuda") == torch.device("cuda", 3)
    assert distributed.local_device("cuda:1") == torch.device("cuda", 1)
    assert distributed.local_device("cpu") == torch.device("cpu")
    assert distributed.local_device("banana") == "banana"  # resolve_device names it


def test_a_bad_device_under_torchrun_is_one_line_before_the_group_forms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from resgen.training import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in (("banana", "unknown device"), ("cuda", "is_available")):
        with pytest.raises(ValueError, match=message):
            distributed.init_from_env(device)
    assert not torch.distributed.is_initialized()

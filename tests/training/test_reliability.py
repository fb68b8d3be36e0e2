"""Trustworthy run folders: no code from checkpoints, exact resume, one writer, atomic writes,
permissions, and one clear line for every user error (the "Reliability" page's table)."""

from __future__ import annotations

import errno
import os
import pickle
import stat
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from torch import nn

from resgen.cli import main
from resgen.errors import RunFolderInUseError, describe
from resgen.files import atomic_write, new_file_mode
from resgen.training import checkpoint as checkpoint_module
from resgen.training.checkpoint import (
    CheckpointError,
    finished_checkpoint,
    load_checkpoint,
    recover_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from resgen.training.run_lock import LOCK_NAME, lock_run_folder
from resgen.training.trainer import StageSpec, batch_generator, run_stage


class Payload:
    """Unpickling this creates ``path``: the stand-in for a hostile command."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.path), "w"))


def plant(path: Path, marker: Path) -> None:
    """Replace (or create) ``path`` with a pickle that would create ``marker``."""
    path.write_bytes(pickle.dumps({"step": 1, "history": [Payload(marker)]}))


# --------------------------------------------------------------------------- 1. no code
def test_training_state_round_trips_without_pickle(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {
        "optimizer": optimizer.state_dict(),
        "history": [(0, 1.5), (10, 0.25)],
        "seconds": 3.0,
        "note": None,
        "rng": {"cpu": torch.get_rng_state()},
    }
    save_checkpoint(tmp_path / "ck", {"m": model}, {"v": 1}, state)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "config.json",
        "m.safetensors",
        "state.json",
        "state.safetensors",
    ]
    loaded = load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, training_state=True)
    assert loaded["history"] == [(0, 1.5), (10, 0.25)]  # tuples stay tuples
    assert loaded["note"] is None and loaded["seconds"] == 3.0
    assert torch.equal(loaded["rng"]["cpu"], state["rng"]["cpu"])
    saved_moments = state["optimizer"]["state"][0]
    assert set(loaded["optimizer"]["state"]) == {0, 1}  # integer keys stay integers
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(loaded["optimizer"]["state"][0][key], saved_moments[key])
    fresh = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=0.1)
    fresh.load_state_dict(loaded["optimizer"])  # what a resumed stage does
    with pytest.raises(TypeError, match="cannot hold"):
        save_checkpoint(tmp_path / "bad", {"m": model}, {}, {"x": object()})


def test_no_checkpoint_file_is_ever_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "ck", {"m": model}, {"v": 1}, {"step": 3})
    plant(tmp_path / "ck" / "state.pt", marker)  # the old name, beside the new state
    assert load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}) is None  # sampling
    state = load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, training_state=True)
    assert state == {"step": 3} and not marker.exists()
    for name in ("state.json", "state.safetensors", "config.json"):
        plant(tmp_path / "ck" / name, marker)
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, training_state=True)
        assert not marker.exists()
        save_checkpoint(tmp_path / "ck", {"m": model}, {"v": 1}, {"step": 3})
    # A run folder of the old format: state.pt alone is read with weights_only=True, so a
    # payload is refused (and a plain one still resumes).
    (tmp_path / "ck" / "state.json").unlink()
    (tmp_path / "ck" / "state.safetensors").unlink(missing_ok=True)
    plant(tmp_path / "ck" / "state.pt", marker)
    with pytest.raises(CheckpointError, match="safely"):
        load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, training_state=True)
    assert not marker.exists()
    torch.save({"step": 7, "history": [(0, 1.0)]}, tmp_path / "ck" / "state.pt")
    legacy = load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, training_state=True)
    assert legacy == {"step": 7, "history": [(0, 1.0)]}


# --------------------------------------------------------------------------- 2. exact resume
SPEC = StageSpec(steps=12, batch_size=8, lr=1e-2, checkpoint_every=4)
DATA = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))


class NoisyNet(nn.Module):
    """Draws from the global generator in training, as dropout layers and condition dropout do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.3), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = (torch.rand(x.shape[0], 1) > 0.2).float()  # a label dropped with p = 0.2
        return self.net(x * keep)


def _noisy_loss(model: nn.Module, kill_at: int | None = None):  # noqa: ANN202
    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if step == kill_at:
            raise KeyboardInterrupt
        idx = torch.randint(len(DATA), (SPEC.batch_size,), generator=batch_generator(0, step))
        return model(DATA[idx]).pow(2).mean(), {}

    return loss_fn


def _train(folder: Path, kill_at: int | None = None) -> nn.Module:
    torch.manual_seed(3)
    model = NoisyNet()
    run_stage("s", folder, {"m": model}, SPEC, _noisy_loss(model, kill_at), {"v": 1})
    return model


def test_resume_is_bit_exact_with_global_random_draws(tmp_path: Path) -> None:
    straight = _train(tmp_path / "a")
    after_straight = torch.rand(3)  # what the next stage would draw
    torch.manual_seed(12345)  # the resumed process starts from another global state
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b", kill_at=6)  # killed between the checkpoints at 4 and 8
    torch.manual_seed(999)
    resumed = _train(tmp_path / "b")
    after_resumed = torch.rand(3)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(after_straight, after_resumed)
    # A finished stage that only loads leaves the global generator where training left it.
    torch.manual_seed(7)
    _train(tmp_path / "a")
    assert torch.equal(torch.rand(3), after_straight)


def test_resume_without_the_rng_state_would_differ(tmp_path: Path) -> None:
    """The check above can fail: dropping the saved generator state changes the weights."""
    straight = _train(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b", kill_at=6)
    latest = tmp_path / "b" / "latest"
    state = load_checkpoint(latest, {"m": NoisyNet()}, training_state=True)
    del state["rng"]
    save_checkpoint(latest, {"m": _loaded(latest)}, {"v": 1}, state)
    torch.manual_seed(999)
    resumed = _train(tmp_path / "b")
    assert not all(
        torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters(), strict=True)
    )


def _loaded(folder: Path) -> nn.Module:
    model = NoisyNet()
    load_checkpoint(folder, {"m": model})
    return model


# --------------------------------------------------------------------------- 3. one writer
def test_a_second_writer_is_refused_and_a_dead_one_s_lock_taken_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with lock_run_folder(out):
        assert f"pid {os.getpid()}" in (out / LOCK_NAME).read_text()
        with pytest.raises(RunFolderInUseError, match=f"pid {os.getpid()}"):
            with lock_run_folder(out):
                pass
        status = main(["train", "image-fashion", "--preset", "smoke", "--out", str(out)])
        assert status == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("resgen: error:") and f"pid {os.getpid()}" in err
        assert len(err.splitlines()) == 1
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    # The lock file of a killed process (its flock died with it) does not block the next run.
    (out / LOCK_NAME).write_text("pid 999999 on a-host-that-died\n")
    with lock_run_folder(out):
        assert f"pid {os.getpid()}" in (out / LOCK_NAME).read_text()


# --------------------------------------------------------------------------- 4. atomic writes
def test_checkpoint_files_are_flushed_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(checkpoint_module, "fsync_path", lambda p: events.append(f"fsync {p}"))
    monkeypatch.setattr(
        checkpoint_module.os,
        "replace",
        lambda a, b: (events.append(f"rename {b}"), real_replace(a, b)),
    )
    state = {"step": 1, "rng": torch.get_rng_state()}
    save_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, {"v": 1}, state)
    renamed = events.index(f"rename {tmp_path / 'ck'}")
    flushed = {e.split(" ", 1)[1] for e in events[:renamed] if e.startswith("fsync")}
    assert {Path(p).name for p in flushed} >= {
        "m.safetensors",
        "config.json",
        "state.json",
        "state.safetensors",
    }
    assert any(Path(p).name.startswith(".ck.tmp-") for p in flushed)  # the folder itself
    assert f"fsync {tmp_path}" in events[renamed:]  # the rename itself reaches the disk


def test_a_crash_between_the_renames_is_recovered(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "final", {"m": model}, {"v": 1})
    # what a kill between the two renames of a replacement leaves
    os.replace(tmp_path / "final", tmp_path / ".final.old")
    (tmp_path / ".final.tmp-abc").mkdir()
    assert resolve_checkpoint(tmp_path / "final") == tmp_path / ".final.old"
    assert finished_checkpoint(tmp_path) == tmp_path / ".final.old"  # readers still find it
    loaded = nn.Linear(3, 2)
    load_checkpoint(tmp_path / "final", {"m": loaded})
    assert torch.equal(loaded.weight, model.weight)
    recover_checkpoint(tmp_path / "final")  # what the trainer does first, holding the lock
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_readers_use_final_over_latest_and_refuse_an_unfinished_stage(tmp_path: Path) -> None:
    stage = tmp_path / "classifier"
    save_checkpoint(stage / "latest", {"m": nn.Linear(3, 2)}, {"v": 1})
    with pytest.raises(CheckpointError, match="not finished training"):
        finished_checkpoint(stage)
    save_checkpoint(stage / "final", {"m": nn.Linear(3, 2)}, {"v": 1})
    assert finished_checkpoint(stage) == stage / "final"
    with pytest.raises(CheckpointError, match="no finished checkpoint"):
        finished_checkpoint(tmp_path / "missing")


def test_a_stage_cleans_up_after_a_killed_write_and_drops_latest_when_final(
    tmp_path: Path,
) -> None:
    (tmp_path / ".latest.tmp-x1").mkdir()
    (tmp_path / ".latest.tmp-x1" / "m.safetensors").write_bytes(b"half")
    _train(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_a_full_disk_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(tensors, filename):  # noqa: ANN001, ANN202
        Path(filename).write_bytes(b"partial")  # what the serialiser says on a full disk
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", full)
    save_checkpoint(tmp_path / "ck", {}, {"v": 1})  # nothing to serialise yet
    with pytest.raises(OSError) as caught:
        save_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, {"v": 2})
    assert caught.value.errno == errno.ENOSPC
    line = describe(caught.value)
    assert line.startswith("no space left writing") and "\n" not in line
    assert "re-run the same command" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # the old one, no leftovers
    assert load_checkpoint(tmp_path / "ck", {}, {"v": 1}) is None


# --------------------------------------------------------------------------- 6. permissions
def test_outputs_get_the_umask_s_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, {"v": 1}, {"step": 1})
        atomic_write(tmp_path / "x.txt", lambda p: p.write_text("hi"))
        assert stat.S_IMODE((tmp_path / "ck").stat().st_mode) == 0o755
        for path in [*(tmp_path / "ck").iterdir(), tmp_path / "x.txt"]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
        os.umask(0o077)
        atomic_write(tmp_path / "private.txt", lambda p: p.write_text("hi"))
        assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
        assert new_file_mode() == 0o600
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    "state",
    [
        {"step": "abc"},
        {"step": 4, "history": "nope"},
        {"step": 4, "optimizer": {"state": {}, "param_groups": "x"}},
        {"step": 4, "rng": {"cpu": torch.zeros(3, dtype=torch.uint8)}},
    ],
)
def test_a_corrupt_training_state_is_a_checkpoint_error(tmp_path: Path, state: dict) -> None:
    save_checkpoint(tmp_path / "latest", {"m": NoisyNet()}, {"v": 1}, state)
    with pytest.raises(CheckpointError, match="training state"):
        _train(tmp_path)

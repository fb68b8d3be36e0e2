"""The pickle-free torch.distributed.checkpoint layout, on one process (the two-process save and
resume is in ``test_distributed.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resgen.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    recover_checkpoint,
    resolve_checkpoint,
)
from resgen.training.distributed_checkpoint import (
    METADATA,
    is_sharded_checkpoint,
    load_sharded,
    save_sharded,
)
from resgen.training.trainer import StageSpec, run_stage


def test_a_sharded_checkpoint_round_trips_through_json_metadata(tmp_path: Path) -> None:
    tensors = {"model/w": torch.randn(3, 4), "optimizer/step": torch.tensor(7.0)}
    folder = tmp_path / "latest"
    save_sharded(folder, tensors, {"network": {"width": 4}}, {"step": 7})
    assert is_sharded_checkpoint(folder)
    assert not (folder / ".metadata").exists()  # DCP's pickled metadata is never written
    json.loads((folder / METADATA).read_text())
    state = load_checkpoint(folder, {}, {"network": {"width": 4}}, training_state=True)
    assert state == {"step": 7}
    into = {k: torch.zeros_like(v) for k, v in tensors.items()}
    load_sharded(folder, into)
    assert all(torch.equal(into[k], v) for k, v in tensors.items())


def test_a_killed_sharded_save_never_looks_complete(tmp_path: Path) -> None:
    folder = tmp_path / "latest"
    save_sharded(folder, {"w": torch.ones(2)}, {}, {"step": 1})
    # a save killed after the shards were written but before rank 0 published the folder
    tmp = tmp_path / ".latest.tmp-dcp"
    tmp.mkdir()
    (tmp / "__0_0.distcp").write_bytes(b"partial")
    (tmp / METADATA).write_text("{}")
    assert resolve_checkpoint(folder) == folder
    assert load_checkpoint(folder, {}, training_state=True) == {"step": 1}
    recover_checkpoint(folder)
    assert not tmp.exists()


def test_metadata_naming_a_file_outside_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "latest"
    save_sharded(folder, {"w": torch.ones(2)}, {}, {"step": 1})
    data = json.loads((folder / METADATA).read_text())
    data["storage"][0]["file"] = "../elsewhere.distcp"
    (folder / METADATA).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="outside its folder"):
        load_sharded(folder, {"w": torch.zeros(2)})


def test_a_plain_run_refuses_to_resume_fsdp_shards(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 1)
    save_sharded(tmp_path / "stage" / "latest", {"w": torch.ones(2)}, {}, {"step": 1})
    spec = StageSpec(steps=2, batch_size=4, lr=0.1)

    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return model.bias.sum(), {}

    with pytest.raises(CheckpointError, match="holds FSDP shards"):
        run_stage("s", tmp_path / "stage", {"m": model}, spec, loss_fn, {})

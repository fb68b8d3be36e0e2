"""The generator-quality benchmark end to end at its smoke size, and how it merges tables."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "generator_quality.py"


@pytest.fixture(scope="module")
def generator_quality():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("generator_quality", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["generator_quality"] = module  # attrs classes resolve their module by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["generator_quality"]


def test_two_seeds_share_the_first_seeds_sweep_and_pool_their_images(
    generator_quality, tmp_path: Path
) -> None:
    table = tmp_path / "table.json"
    args = ["--out", str(tmp_path / "run"), "--preset", "smoke", "--depths", "2"]
    args += ["--seeds", "0", "1", "--rows", "resgen", "token", "ar", "--json", str(table)]
    assert generator_quality.main(args) == 0
    record = json.loads(table.read_text())
    preset = generator_quality.PRESETS["smoke"]
    assert [r["row"] for r in record["rows"]] == ["resgen", "token", "ar"]
    assert set(record["shared_stage_seconds"]) == {"codec", "classifier"}
    for row in record["rows"]:
        first, second = row["per_seed"]
        assert set(first["sweep"]) == {str(s) for s in preset.scales}
        assert first["guidance_scale"] in preset.scales
        # the second seed is scored at the first seed's scale, without a sweep of its own
        assert second["sweep"] == {} and second["guidance_scale"] == first["guidance_scale"]
        assert second["guidance_chosen_by"] == "the first seed's sweep"
        assert row["samples"] == 2 * len(generator_quality.balanced_labels(preset.eval_samples))
        low, high = row["class_accuracy_interval_95"]
        assert low <= row["class_accuracy"] <= high
        assert row["run"]["command"] == record["command"]
    assert "| ar | 2 | 2 |" in record["table"]


def test_merge_keeps_earlier_rows_with_their_provenance(generator_quality) -> None:
    earlier = {
        "command": "old",
        "date": "2026-12-01",
        "git_commit": "abc",
        "rows": [{"row": "ar", "depth": 8}, {"row": "resgen", "depth": 8}],
        "diagnostics": [{"depth": 8, "old": True}],
    }
    fresh = [{"row": "resgen", "depth": 8, "run": {"command": "new"}}]
    rows, diagnosis = generator_quality.merge_records(earlier, fresh, [])
    assert [(r["row"], r["run"]["command"]) for r in rows] == [("resgen", "new"), ("ar", "old")]
    assert diagnosis == [{"depth": 8, "old": True}]

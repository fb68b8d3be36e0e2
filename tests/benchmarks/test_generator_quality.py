"""The generator-quality benchmark end to end at its smoke size, and how it merges tables."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

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
    # Merging from the same --out (the cached token row again) keeps the other rows; a table
    # of other tokens or another classifier is refused before anything trains.
    run = args[:-6]  # without --rows and --json
    assert generator_quality.main([*run, "--rows", "token", "--json", str(table), "--merge"]) == 0
    assert [r["row"] for r in json.loads(table.read_text())["rows"]] == ["resgen", "token", "ar"]
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({**record, "fingerprint": {"tokens": "0", "classifier": "0"}}))
    with pytest.raises(SystemExit, match="tokens and classifier differ"):
        generator_quality.main([*run, "--json", str(foreign), "--merge"])


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


def test_fingerprint_tells_tokens_and_classifiers_apart(generator_quality) -> None:
    tokens = torch.randint(256, (4, 3, 2))
    classifier = torch.nn.Linear(3, 2)
    print_ = generator_quality.shared_fingerprint(tokens, classifier)
    assert generator_quality.shared_fingerprint(tokens.clone(), classifier) == print_
    tokens[0, 0, 0] = (tokens[0, 0, 0] + 1) % 256
    assert generator_quality.shared_fingerprint(tokens, classifier)["tokens"] != print_["tokens"]
    with torch.no_grad():
        classifier.bias.add_(1e-6)
    moved = generator_quality.shared_fingerprint(tokens, classifier)["classifier"]
    assert moved != print_["classifier"]
    with pytest.raises(ValueError, match="no fingerprint"):
        generator_quality.check_mergeable({"rows": []}, print_)

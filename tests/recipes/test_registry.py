"""Every registered recipe satisfies the Recipe protocol, so ``resgen train`` needs no probing."""

from __future__ import annotations

import inspect
import types

import pytest

from resgen.recipes import RECIPES, Recipe, load_recipe


def _parameters(function: object) -> list[tuple[str, object, object]]:
    signature = inspect.signature(function)
    return [(p.name, p.kind, p.default) for p in signature.parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_satisfies_the_protocol(name: str) -> None:
    recipe = load_recipe(name)
    assert isinstance(recipe, Recipe)
    assert recipe.PRESETS and "smoke" in recipe.PRESETS
    for member in ("configure", "run"):
        assert _parameters(getattr(recipe, member)) == _parameters(getattr(Recipe, member)), (
            f"{name}.{member} does not take the protocol's parameters"
        )
    for preset, config in recipe.PRESETS.items():
        assert recipe.configure(preset) == config


def test_a_module_without_the_members_is_refused() -> None:
    assert not isinstance(types.ModuleType("empty"), Recipe)
    with pytest.raises(ValueError, match="unknown recipe"):
        load_recipe("no-such-recipe")


def test_tts_synth_refuses_overrides_and_other_devices(tmp_path) -> None:
    recipe = load_recipe("tts-synth")
    with pytest.raises(ValueError, match="--model/--depth"):
        recipe.configure("smoke", depth=2)
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        recipe.run(tmp_path, recipe.PRESETS["smoke"], device="meta")
    assert not any(tmp_path.iterdir())


def test_an_old_objective_gets_the_defaults_of_its_new_options() -> None:
    from attrs import asdict

    from resgen.diffusion.loss import ResGenObjective
    from resgen.recipes.generators import with_new_objective_options

    old = {"seed": 0, "objective": {"kind": "jensen", "beta": 1.0}}
    filled = with_new_objective_options(old)
    assert filled["objective"] == asdict(ResGenObjective(kind="jensen", beta=1.0))
    assert filled["seed"] == 0 and old["objective"] == {"kind": "jensen", "beta": 1.0}
    unknown = {"objective": {"kind": "jensen", "gamma": 2}}
    assert with_new_objective_options(unknown) == unknown  # left for the comparison to name

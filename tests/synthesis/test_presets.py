"""Generation presets: declared per registry entry, precedence explicit > preset > defaults, errors."""

import logging

import pytest

from clipag_plugin.registry import REGISTRY
from clipag_plugin.synthesis import api
from clipag_plugin.synthesis.init import auto_candidates
from clipag_plugin.synthesis.loop import GenerateConfig
from clipag_plugin.synthesis.presets import (
    PRESETS,
    GenerationPreset,
    get_preset,
    preset_of_model,
    resolve_config,
)

DEFAULTS = GenerateConfig()
MINI = PRESETS["mini"].as_dict()


def test_every_registry_entry_names_a_known_preset():
    for entry in REGISTRY.values():
        assert entry.preset in PRESETS, entry.name


def test_vanilla_baselines_share_the_preset_of_their_robust_twin():
    assert REGISTRY["mini"].preset == REGISTRY["mini-vanilla"].preset == "mini"
    assert REGISTRY["openai-ViT-B/32"].preset == REGISTRY["ViT-B/32"].preset == "notebook"
    assert REGISTRY["laion2b-ViT-B/32"].preset == REGISTRY["fare4-ViT-B/32-laion2b"].preset


def test_the_notebook_preset_is_the_global_defaults():
    config, preset = resolve_config(["ViT-B/32"])
    assert preset.name == "notebook" and config == DEFAULTS


def test_model_preset_fills_what_was_not_given():
    config, preset = resolve_config(["mini"])
    assert preset.name == "mini"
    for key, value in MINI.items():
        assert getattr(config, key) == value
    assert config.weight_decay == DEFAULTS.weight_decay  # not in the preset: the global default


def test_explicit_options_win_over_the_preset():
    changed = {"param": "pixels" if MINI.get("param") != "pixels" else "multires", "steps": 7, "views": 4}
    config, _ = resolve_config(["mini"], explicit=changed)
    assert (config.param, config.steps, config.views) == (changed["param"], 7, 4)
    assert config.optimizer == MINI["optimizer"]  # the rest of the preset stays


def test_preset_none_and_named_presets():
    config, preset = resolve_config(["mini"], preset="none")
    assert preset is None and config == DEFAULTS
    config, preset = resolve_config(["hf-hub:org/repo"], preset="mini")
    assert preset.name == "mini" and config.optimizer == MINI["optimizer"]


def test_paths_hub_names_and_modules_have_no_preset():
    assert preset_of_model("/some/folder") is None
    assert preset_of_model("hf-hub:org/repo") is None
    assert preset_of_model(object()) is None
    assert resolve_config(["/some/folder"])[1] is None


def test_ensemble_of_different_presets_uses_the_first_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="clipag_plugin"):
        _, preset = resolve_config(["mini", "ViT-B/32"])
    assert preset.name == "mini" and "different presets" in caplog.text


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="auto, none, notebook, mini"):
        get_preset("fast")
    with pytest.raises(ValueError, match="preset 'fast' is unknown"):
        resolve_config(["mini"], preset="fast")


def test_a_preset_naming_an_unknown_field_is_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown field\(s\) colour_boost; valid: steps, lr"):
        GenerationPreset("bad", "a typo", (("colour_boost", 2.0),))
    with pytest.raises(ValueError, match="lr=-1"):
        GenerationPreset("bad", "out of range", (("lr", -1.0),))


def test_unknown_explicit_option_is_an_error():
    with pytest.raises(ValueError, match="unknown generate option"):
        resolve_config(["mini"], explicit={"stepz": 3})


def test_auto_candidates_never_cost_more_than_the_steps():
    assert auto_candidates(100, 64, "cuda") == 1000  # the notebook's count where scoring is cheap
    assert auto_candidates(100, 64, "cpu") == 1000
    assert auto_candidates(100, 1, "cpu") == 300  # plain steps: a forward and a backward per step
    assert auto_candidates(2, 1, "cpu") == 16


def test_generate_applies_and_reports_the_model_preset(caplog):
    with caplog.at_level(logging.INFO, logger="clipag_plugin"):
        result = api.generate_tensor("a red circle on the left, blue background", "mini", steps=2, gmm_candidates=16,
                                     progress=False, device="cpu")
    assert result.preset == "mini" and result.config.steps == 2 and result.config.gmm_candidates == 16
    for key, value in MINI.items():
        if key not in ("levels", "steps", "gmm_candidates"):
            assert getattr(result.config, key) == value
    assert "preset mini" in caplog.text


def test_generate_with_a_whole_config_uses_no_preset():
    config = GenerateConfig(steps=1, views=1, crops=0, augment=False, init="gray")
    result = api.generate_tensor("a red circle on the left, blue background", "mini", config=config, progress=False,
                                 device="cpu")
    assert result.preset is None and result.config.param == "pixels" and result.config.optimizer == "adamw"


def test_device_aware_candidates_are_announced(caplog, tiny_clip):
    model, _ = tiny_clip
    with caplog.at_level(logging.INFO, logger="clipag_plugin"):
        result = api.generate_tensor("a fox", model, steps=3, views=1, crops=0, augment=False, progress=False)
    assert result.config.gmm_candidates == 16
    assert "best of 16 GMM candidates (chosen for cpu" in caplog.text


def test_model_cache_loads_each_name_and_device_once(monkeypatch, tiny_model_dir):
    calls = []
    import clipag_plugin.loading as loading

    original = loading.load
    monkeypatch.setattr(loading, "load", lambda name, device=None: calls.append((name, device)) or original(name, device))
    api.clear_model_cache()
    a = api.load_model(str(tiny_model_dir), "cpu")
    b = api.load_model(str(tiny_model_dir), "cpu")
    assert a is b and len(calls) == 1
    api.generate_tensor("a fox", str(tiny_model_dir), device="cpu", steps=1, views=1, crops=0, augment=False,
                        init="gray", progress=False)
    assert len(calls) == 1  # generate reuses the cached model
    api.clear_model_cache()
    assert api.load_model(str(tiny_model_dir), "cpu") is not a and len(calls) == 2


def test_model_cache_is_bounded(monkeypatch):
    import clipag_plugin.loading as loading

    monkeypatch.setattr(loading, "load", lambda name, device=None: (object(), None))
    api.clear_model_cache()
    first = api.load_model("m0")
    for i in range(1, api.MODEL_CACHE_SIZE + 1):
        api.load_model(f"m{i}")
    assert len(api._MODEL_CACHE) == api.MODEL_CACHE_SIZE
    assert api.load_model("m0") is not first  # the least recently used was dropped
    api.clear_model_cache()

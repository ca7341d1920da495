"""``synthesis.styling``: CLIPStyler as a library generator, its presets and content networks."""

from __future__ import annotations

import pytest
import torch

from clipag_plugin.guidance.directional import PatchTricks
from clipag_plugin.synthesis.loop import run_to_end
from clipag_plugin.synthesis.styling import (
    STYLE_PRESETS,
    StyleConfig,
    StyleFrame,
    content_network,
    style_preset_for,
    stylize,
    stylize_iter,
    with_options,
)


def test_presets_by_model():
    assert style_preset_for("mini") == "mini" and style_preset_for("mini-vanilla") == "mini"
    assert style_preset_for("ViT-B/32") == "reference" and style_preset_for("/some/folder") == "reference"
    mini = STYLE_PRESETS["mini"]
    assert mini.size == 64 and mini.content_net == "random-vgg19" and mini.size % 8 == 0
    assert STYLE_PRESETS["reference"] == StyleConfig()  # the reference's settings, unchanged
    changed = with_options(mini, steps=7, size=None, tricks=PatchTricks(patch_loss=False))
    assert changed.steps == 7 and changed.size == 64 and changed.tricks.patch_loss is False


def test_content_networks(offline_hub):
    random_net = content_network(StyleConfig(content_net="random-vgg19"))
    again = content_network(StyleConfig(content_net="random-vgg19"))
    assert random_net.is_random_stand_in and all(torch.equal(a, b) for a, b in
                                                 zip(random_net.parameters(), again.parameters(), strict=True))
    with pytest.raises(OSError, match="python -m clipag_plugin.vgg"):
        content_network(StyleConfig())
    with pytest.raises(ValueError, match="content_net='alexnet'"):
        StyleConfig(content_net="alexnet")


def test_frames_every_k_steps_and_the_loss_falls(tiny_clip):
    from clipag_plugin.vgg import random_vgg19_features

    model, _ = tiny_clip
    vgg = random_vgg19_features(width_divisor=16)
    content = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    config = StyleConfig(size=32, steps=5, lr=2e-3, num_crops=4, crop_size=16, templates=False,
                         tricks=PatchTricks(threshold=None))
    frames: list = []
    result = run_to_end(stylize_iter(content, "oil painting", model, vgg, config, every=2), frames.append)
    assert [f.step for f in frames] == [2, 4, 5] and all(isinstance(f, StyleFrame) for f in frames)
    assert frames[0].image.shape == (3, 32, 32) and set(frames[0].losses) == {"total", "patch", "global", "content",
                                                                              "tv"}
    assert result.image.shape == content.shape and len(result.history) == 5
    longer = stylize(content, "oil painting", model, vgg, with_options(config, steps=12))
    assert longer.history[-1]["total"] < longer.history[0]["total"]

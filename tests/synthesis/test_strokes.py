"""CLIPDraw as a library loop: settings checked, frames streamed, presets per model."""

from __future__ import annotations

import pytest
import torch

from clipag_plugin.synthesis.loop import run_to_end
from clipag_plugin.synthesis.strokes import (
    DRAW_PRESETS,
    DrawConfig,
    Drawing,
    draw,
    draw_iter,
    draw_preset_for,
)

TINY = DrawConfig(paths=6, steps=5, canvas=32, augment=False)


@pytest.mark.parametrize("changes, match", [
    (dict(paths=0), "paths=0"),
    (dict(canvas=4), "canvas=4"),
    (dict(init_width=60.0), "init_width=60.0"),
    (dict(copies=0), "copies=0"),
])
def test_bad_settings_name_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        DrawConfig(**changes)


def test_frames_every_k_steps_and_the_drawing_at_the_end(tiny_clip):
    model, _ = tiny_clip
    frames: list = []
    drawing = run_to_end(draw_iter("a red circle", model, TINY, every=2), frames.append)
    assert [f.step for f in frames] == [2, 4, 5] and all(f.total == 5 for f in frames)
    assert all(f.image.shape == (3, 32, 32) and f.scene is not None for f in frames)
    assert isinstance(drawing, Drawing) and len(drawing.losses) == 5 and drawing.config == TINY
    assert drawing.scene.widths.min() >= 1.0 and drawing.image.shape == (3, 32, 32)
    # the last frame's strokes are the drawing's
    torch.testing.assert_close(frames[-1].scene.points, drawing.scene.points)


def test_draw_is_deterministic_per_seed_and_counts_one_view_per_step(tiny_clip, monkeypatch):
    model, _ = tiny_clip
    calls = []
    encode = model.encode_image
    monkeypatch.setattr(model, "encode_image", lambda x: calls.append(len(x)) or encode(x))
    a = draw("a red circle", model, TINY)
    b = draw("a red circle", model, TINY)
    assert calls == [1] * 10 and a.losses == b.losses
    with_trick = draw("a red circle", model, DrawConfig(paths=6, steps=2, canvas=32, augment=True, copies=3))
    assert calls[10:] == [3, 3] and len(with_trick.losses) == 2


def test_each_model_gets_its_drawing_preset(tiny_clip):
    import clipag

    assert draw_preset_for("mini") == draw_preset_for("mini-vanilla") == "mini"
    assert draw_preset_for("ViT-B/32") == "notebook" and draw_preset_for(tiny_clip[0]) == "notebook"
    assert draw_preset_for(clipag.load("mini", device="cpu")[0]) == "mini"
    assert DRAW_PRESETS["notebook"] == DrawConfig()  # the notebook's own settings
    assert DRAW_PRESETS["mini"].canvas == 96

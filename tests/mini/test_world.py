"""The mini world's renderer and captions: semantics that are part of the product."""

from __future__ import annotations

import pytest
import torch

from clipag_plugin.mini import world


def test_six_hundred_distinct_captions_in_the_documented_form():
    caps = world.all_captions()
    assert len(caps) == 600 == len(set(caps))
    assert caps[0] == "a red circle on the left, green background"
    for text in caps:
        parsed = world.parse_caption(text)
        assert parsed["colour"] != parsed["background"]
        assert world.caption(**parsed) == text


def test_parse_caption_names_the_format_on_bad_input():
    with pytest.raises(ValueError, match="not a mini-world caption"):
        world.parse_caption("a red circle on the left, red background")
    with pytest.raises(KeyError, match="background colour must differ"):
        world.caption_index(0, 0, 0, 0)


def test_render_is_64px_rgb_in_unit_range_and_pure_in_its_parameters():
    g = torch.Generator().manual_seed(0)
    scenes = world.sample_scenes(8, g, world.TRAIN)
    a, b = world.render(scenes), world.render(scenes)
    assert a.shape == (8, 3, 64, 64)
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("position", world.POSITIONS)
def test_clean_render_puts_the_named_colour_at_the_named_place(position):
    p = world.POSITIONS.index(position)
    ids = [world.caption_index(c, s, p, (c + 1) % 6) for c in range(6) for s in range(4)]
    scenes = world.scenes_from_indices(ids, torch.Generator().manual_seed(p))
    images = world.render(scenes)
    far = {"left": (32, 62), "right": (32, 1), "top": (62, 32), "bottom": (1, 32), "center": (1, 1)}[position]
    for i, (c, _, _, b) in enumerate(world.parse_caption(t).values() for t in scenes.captions):
        # every shape covers a pixel just below its centre (the triangle's centroid is low)
        y, x = int(scenes.cy[i]) + 1, int(scenes.cx[i])
        assert abs(x - world.POSITION_CENTRES[position][0]) <= 5 and abs(y - 1 - world.POSITION_CENTRES[position][1]) <= 5
        assert torch.allclose(images[i, :, y, x], torch.tensor(world.COLOUR_RGB[c]), atol=1e-4)
        assert torch.allclose(images[i, :, far[0], far[1]], torch.tensor(world.COLOUR_RGB[b]), atol=1e-4)


def test_shapes_have_distinct_areas():
    ids = [world.caption_index(0, s, 4, 1) for s in range(4)]
    scenes = world.scenes_from_indices(ids, torch.Generator().manual_seed(0))
    scenes = world.Scenes(**{**scenes.__dict__, "half": torch.full((4,), 12.0),
                             "cx": torch.full((4,), 32.0), "cy": torch.full((4,), 32.0)})
    red = torch.tensor(world.COLOUR_RGB["red"]).view(3, 1, 1)
    area = [((world.render(scenes)[i] - red).abs().sum(0) < 1e-3).sum().item() for i in range(4)]
    circle, square, triangle, cross = area
    assert len(set(area)) == 4 and min(area) > 150  # distinct silhouettes, none degenerate
    assert triangle < circle and cross < circle


def test_variation_keeps_captions_truthful_for_the_scene_parameters():
    g = torch.Generator().manual_seed(1)
    scenes = world.sample_scenes(32, g, world.WIDE)
    assert scenes.captions == [world.all_captions()[i] for i in scenes.caption_ids.tolist()]
    assert ((scenes.cx - torch.tensor([world.POSITION_CENTRES[world.POSITIONS[p]][0] for p in scenes.position.tolist()]))
            .abs() <= world.JITTER_PX).all()
    assert ((scenes.half >= 10) & (scenes.half <= 14)).all()

"""``synthesis.latents``: VQGAN+CLIP as a library generator (tiny CLIP, tiny VQGAN)."""

from __future__ import annotations

import pytest

pytest.importorskip("taming")

from clipag_plugin.synthesis.latents import (  # noqa: E402
    LatentConfig,
    LatentFrame,
    cutouts_for,
    text_targets,
    vqgan_clip,
    vqgan_clip_iter,
)
from clipag_plugin.synthesis.loop import run_to_end  # noqa: E402
from clipag_plugin.vqgan import codebook_bounds  # noqa: E402


def test_frames_come_every_k_steps_and_the_result_stays_in_the_codebook_box(tiny_clip, tiny_vqgan):
    model, _ = tiny_clip
    config = LatentConfig(width=64, height=48, steps=5, lr=0.3, tricks=False)
    frames: list = []
    result = run_to_end(vqgan_clip_iter("a red circle", model, tiny_vqgan, config, every=2), frames.append)
    assert [f.step for f in frames] == [0, 2, 4, 5] and all(isinstance(f, LatentFrame) for f in frames)
    assert result.image.shape == (3, 48, 64) and 0 <= result.image.min() and result.image.max() <= 1
    assert len(result.losses) == 6 and frames[-1].loss == result.losses[-1]
    low, high = codebook_bounds(tiny_vqgan)
    assert (result.latents >= low - 1e-6).all() and (result.latents <= high + 1e-6).all()


def test_steps_lower_the_loss_and_closing_stops_the_run(tiny_clip, tiny_vqgan):
    model, _ = tiny_clip
    seen = []
    result = vqgan_clip("a red circle", model, tiny_vqgan, LatentConfig(width=64, height=64, steps=8, lr=0.3,
                                                                        tricks=False), on_step=seen.append)
    assert len(seen) == 9 and result.losses[-1] < result.losses[0] - 1e-3
    stream = vqgan_clip_iter("a red circle", model, tiny_vqgan, LatentConfig(width=64, height=64, steps=50))
    next(stream)
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)


def test_the_trick_switch_and_weighted_prompts(tiny_clip):
    model, _ = tiny_clip
    on = cutouts_for(LatentConfig(cutn=8), 32)
    off = cutouts_for(LatentConfig(cutn=8, tricks=False), 32)
    assert on.cutn == 8 and on.mode == "latest" and on.noise_fac > 0
    assert off.cutn == 1 and off.mode == "none" and off.augment_name is None and len(off.augs) == 0 and off.noise_fac == 0
    targets = text_targets("a red circle:1 | blurry:-0.5:0.1", model)
    assert targets.embeds.shape[0] == 2 and targets.weights == [1.0, -0.5] and targets.stops[1] == 0.1
    both = targets + targets
    assert both.embeds.shape[0] == 4 and both.weights == [1.0, -0.5, 1.0, -0.5]


@pytest.mark.parametrize("changes, match", [
    (dict(steps=-1), "steps=-1"), (dict(width=8), "at least 16 px"), (dict(cut_method="zigzag"), "cut_method"),
    (dict(cutn=0), "cutn=0"),
])
def test_bad_settings_name_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        LatentConfig(**changes)

"""Judge CLIPStyler on the mini world: styling settings for the mini models, vanilla vs robust.

    python benchmarks/style_mini.py --pairs 12 --settings preset "level-c,steps=200"
    python benchmarks/style_mini.py --pairs 12 --skip 12 --settings preset      # held-out pairs

Each pair is a clean render of a mini-world caption (``mini.pag.seeded_prompts``, seed 2024;
``--skip K`` leaves out the first K, so the pairs that chose a setting are not the ones that
report it) and a style text that asks one attribute to change: the background colour
(``"green background"``) on even pairs, the object's colour (``"green circle"``) on odd ones.
The stylized image (after the reference's contrast step, as users see it) is read by the world's
judge against the changed caption: ``style`` = the asked attribute now reads the new colour,
``content`` = shape and position still read as before, ``both`` = the two at once. Each
``--settings`` entry is ``name=value,...`` over the ``mini`` styling preset
(:data:`clipag_plugin.synthesis.styling.STYLE_PRESETS`); ``preset`` is the preset as it is,
``reference`` the reference's settings at the mini size (content network kept: the offline random
VGG19), ``level-a/b/c`` the trick levels.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
import torch.nn.functional as F
from _overrides import parse_overrides

import clipag
from clipag_plugin.guidance.directional import PatchTricks
from clipag_plugin.mini import judge as J
from clipag_plugin.mini import pag, world
from clipag_plugin.synthesis.styling import STYLE_PRESETS, StyleConfig, content_network, finish_image, stylize

NAMED = {
    "preset": {},
    "reference": {f.name: getattr(StyleConfig(), f.name) for f in dataclasses.fields(StyleConfig)
                  if f.name not in ("size", "seed", "content_net")},
    "level-full": {"tricks": PatchTricks()},
    "level-a": {"tricks": PatchTricks(perspective=False)},
    "level-b": {"tricks": PatchTricks(perspective=False, threshold=None)},
    "level-c": {"tricks": PatchTricks(patch_loss=False)},
}


def style_pairs(n: int, skip: int) -> list[tuple[int, str, str]]:
    """``(caption id, style text, changed caption)`` for pairs ``skip`` .. ``skip + n``."""
    _, ids = pag.seeded_prompts(skip + n, seed=2024)
    g = torch.Generator().manual_seed(7)
    out = []
    for i, cid in enumerate(ids.tolist()):
        c, s, p, b = world.index_tuple(cid)
        new = [k for k in range(len(world.COLOURS)) if k not in (c, b)]
        pick = new[int(torch.randint(len(new), (1,), generator=g))]
        if i < skip:
            continue
        if i % 2 == 0:
            out.append((cid, f"{world.COLOURS[pick]} background",
                        world.caption(world.COLOURS[c], world.SHAPES[s], world.POSITIONS[p], world.COLOURS[pick])))
        else:
            out.append((cid, f"{world.COLOURS[pick]} {world.SHAPES[s]}",
                        world.caption(world.COLOURS[pick], world.SHAPES[s], world.POSITIONS[p], world.COLOURS[b])))
    return out


def measure(model, config: StyleConfig, pairs, judge) -> tuple[dict[str, float], float]:
    vgg = content_network(config)
    images, wanted, asked = [], [], []
    start = time.perf_counter()
    for i, (cid, style, changed) in enumerate(pairs):
        content = world.render_clean([cid], seed=i)
        content = F.interpolate(content, size=(config.size, config.size), mode="bilinear", antialias=True,
                                align_corners=False) if content.shape[-1] != config.size else content
        result = stylize(content, style, model, vgg, dataclasses.replace(config, seed=i))
        images.append(finish_image(result.image)[0])
        wanted.append(changed)
        asked.append("background" if style.endswith("background") else "colour")
    seconds = (time.perf_counter() - start) / len(pairs)
    pred, target = J.readings(torch.stack(images), wanted, judge)
    hits = {a: pred[a] == target[a] for a in target}
    style_hit = torch.stack([hits[a][k] for k, a in enumerate(asked)])
    content_hit = hits["shape"] & hits["position"]
    return {"style": float(style_hit.float().mean()), "content": float(content_hit.float().mean()),
            "both": float((style_hit & content_hit).float().mean()), "all": float(torch.stack(list(hits.values()))
                                                                             .all(0).float().mean())}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=["mini-vanilla", "mini"])
    parser.add_argument("--settings", nargs="+", default=["preset"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    pairs = style_pairs(args.pairs, args.skip)
    judge = J.load_judge()
    models = {name: clipag.load(name, device="cpu")[0] for name in args.models}
    for setting in args.settings:
        config = dataclasses.replace(STYLE_PRESETS["mini"], **parse_overrides(setting, StyleConfig, NAMED))
        for name, model in models.items():
            score, seconds = measure(model, config, pairs, judge)
            print(f"{setting:<40} {name:<13} style {score['style']:.2f} content {score['content']:.2f} "
                  f"both {score['both']:.2f} all {score['all']:.2f} {seconds:.1f} s/image", flush=True)
            print(f"| {setting} | {name} | {score['style']:.2f} | {score['content']:.2f} | {score['both']:.2f} | "
                  f"{score['all']:.2f} |", flush=True)


if __name__ == "__main__":
    main()

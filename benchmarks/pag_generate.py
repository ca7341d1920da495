"""Judge the project's generator on the mini world: vanilla vs robust, per attribute.

    python benchmarks/pag_generate.py --prompts 60                       # the mini preset as it is
    python benchmarks/pag_generate.py --prompts 60 --settings default "param=pixels" "optimizer=adamw,lr=0.05"

Prompts: the first N of ``mini.pag.seeded_prompts(N, seed=2024)`` (``--prompt-seed`` for another
set, ``--skip K`` to leave out the first K); seed ``i`` for prompt ``i``. Each ``--settings``
entry is ``clipag compare``'s ``name=value,...`` syntax over the ``--preset`` (default: ``mini``,
the preset both mini models declare); ``default`` is the preset as it is. ``--steps 0`` judges the
selected start alone. The start of a (model, prompt, seed) is computed once and reused by every
setting that draws it the same way. Printed per row: the judge's accuracies, its mean confidence
and the high-frequency energy of the pictures (cleanliness), and a markdown table row.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

import clipag
from clipag_plugin.cli.compare import parse_setting
from clipag_plugin.mini import judge as J
from clipag_plugin.mini import pag
from clipag_plugin.synthesis import api
from clipag_plugin.synthesis.api import generate_tensor
from clipag_plugin.synthesis.presets import resolve_config


def _memoize_starts() -> None:
    """Reuse a start across settings: same model, prompt, seed and init options give the same image."""
    original, cache = api.make_init, {}

    def make_init(guides, config, size, seed):
        key = (tuple(id(g.model) for g in guides), tuple(g.texts.sum().item() for g in guides), config.init,
               config.init_image, config.gmm_path, config.gmm_candidates, config.distance, size, seed)
        if key not in cache:
            cache[key] = original(guides, config, size, seed)
        return cache[key].clone()

    api.make_init = make_init


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=24, help="how many seeded prompts (default 24)")
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first K prompts of the seeded draw (--prompts 60 --skip 60: prompts 61-120)")
    parser.add_argument("--models", nargs="+", default=["mini-vanilla", "mini"], help="names or folders")
    parser.add_argument("--settings", nargs="+", default=["default"],
                        help="settings over the preset, each 'name=value,...' ('default': the preset as it is)")
    parser.add_argument("--preset", default="mini", help="the settings below --settings (default: mini)")
    parser.add_argument("--steps", default=None,
                        help="comma-separated step counts (default: the setting's; 0: the start alone)")
    parser.add_argument("--candidates", type=int, default=None, help="GMM candidates per start (default: the setting's)")
    parser.add_argument("--prompt-seed", type=int, default=2024,
                        help="seed of the prompt set (2024: the headline's; 7: the second set of docs/mini-world.md)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--confusions", action="store_true",
                        help="also print the judge's most frequent misreadings of colour and shape per row")
    parser.add_argument("--failures", action="store_true",
                        help="also split the judge's colour and shape misreadings by what the model itself reads "
                             "(fooled: the model reads the prompt; not reached: it does not)")
    parser.add_argument("--save", default=None, help="save the images of every row to this folder (.pt)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts, _ = pag.seeded_prompts(args.skip + args.prompts, seed=args.prompt_seed)
    prompts = prompts[args.skip:]
    judge = J.load_judge()
    _memoize_starts()
    base, _ = resolve_config([], args.preset)
    if args.candidates is not None:
        base = dataclasses.replace(base, gmm_candidates=args.candidates)
    for name in args.models:
        model, _ = clipag.load(name, device="cpu")
        for k, spec in enumerate(args.settings):
            setting = dataclasses.replace(base, **parse_setting(spec))
            step_list = [int(s) for s in args.steps.split(",")] if args.steps else [setting.steps]
            for steps in step_list:
                # steps 0: one step of a negligible length, so the kept image is the start
                cfg = dataclasses.replace(setting, steps=max(steps, 1), lr=setting.lr if steps else 1e-9)
                start = time.time()
                images = torch.cat([
                    generate_tensor(p, model, seeds=[i], device="cpu", progress=False, config=cfg).images
                    for i, p in enumerate(prompts, start=args.skip)
                ])
                scores = {k: round(float(v), 3) for k, v in J.score(images, prompts, judge).items()}
                scores["confidence"] = round(J.confidence(images, prompts, judge), 3)
                scores["hf"] = round(pag.high_frequency_energy(images), 4)
                print(f"{name} | {spec} | steps {steps} | {scores} | {time.time() - start:.0f}s", flush=True)
                print(f"| {name} | {spec} | {steps} | {scores['colour+shape']:.2f} | {scores['all']:.2f} | "
                      f"{scores['colour']:.2f} | {scores['shape']:.2f} | {scores['confidence']:.2f} | "
                      f"{scores['hf'] * 1000:.1f} |", flush=True)
                if args.confusions:
                    for attribute, counts in J.confusions(images, prompts, judge).items():
                        if attribute in ("colour", "shape"):
                            top = ", ".join(f"{a}->{r} {n}" for (a, r), n in list(counts.items())[:5])
                            print(f"    {attribute} misread (asked->read): {top or 'none'}", flush=True)
                if args.failures:
                    for attribute, split in pag.failure_split(model.inner, images, prompts, judge).items():
                        if attribute in ("colour", "shape"):
                            print(f"    {attribute}: " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()), flush=True)
                if args.save:
                    Path(args.save).mkdir(parents=True, exist_ok=True)
                    torch.save(images, Path(args.save) / f"{Path(name).name}_setting{k}_steps{steps}.pt")


if __name__ == "__main__":
    main()

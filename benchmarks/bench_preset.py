"""What a model's generation preset costs: the start (scoring GMM candidates) against the steps.

    python benchmarks/bench_preset.py --model mini --repeats 3

The preset's start must not cost more than its steps on the device at hand. Both parts run side by
side in one process, alternating, ``--repeats`` times; printed: the median seconds of each part and
their ratio (start / steps), and the whole generation's time per image.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from clipag_plugin.guidance.prompts import parse_prompts
from clipag_plugin.synthesis import api
from clipag_plugin.synthesis.loop import optimize
from clipag_plugin.synthesis.presets import resolve_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mini")
    parser.add_argument("--prompt", default="a red circle on the left, blue background")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config, preset = resolve_config([args.model])
    guides = api.load_guides(args.model, parse_prompts(args.prompt), args.device)
    size = config.size or int(guides[0].model.visual.input_resolution)
    dev = api._device_of(guides)
    config = dataclasses.replace(config, gmm_candidates=api.candidates_for(config, dev))
    starts, steps = [], []
    for r in range(args.repeats + 1):  # the first round warms up
        t = time.perf_counter()
        init = api.make_init(guides, config, size, seed=r)
        t_start = time.perf_counter() - t
        t = time.perf_counter()
        optimize(init, guides, config, [torch.Generator().manual_seed(r)])
        t_steps = time.perf_counter() - t
        if r:
            starts.append(t_start)
            steps.append(t_steps)
    s, o = statistics.median(starts), statistics.median(steps)
    print(f"model {args.model}, preset {preset.name if preset else 'none'}, {torch.get_num_threads()} threads")
    print(f"start ({config.gmm_candidates} candidates): {s:.2f} s   steps ({config.steps}): {o:.2f} s   "
          f"start / steps: {s / o:.2f}   per image: {s + o:.2f} s")


if __name__ == "__main__":
    main()

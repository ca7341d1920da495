"""What the web page costs on top of generation: a run through ``clipag ui`` against ``clipag generate``.

    python benchmarks/bench_ui.py --rounds 5

The page (served on 127.0.0.1, called through gradio_client as the browser calls it) paints one
prompt with ``mini`` and ``mini-vanilla`` side by side, frames every 10 steps streamed to the
client, then writes each slot's PNG, GIF and JSON. The same two generations with the same
settings through ``clipag generate``'s code path (``generate_tensor``, no progress display, one
PNG each) are the reference. Both run in one process, alternating, ``--rounds`` times after one
warm-up; printed: the median seconds of each, and the median of the per-round ratios
(page / generate).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt", default="a red circle on the left, blue background")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--every", type=int, default=10, help="steps between the page's frames")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from gradio_client import Client

    from clipag_plugin.synthesis.api import generate_tensor
    from clipag_plugin.ui import build_app

    out = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    app = build_app(device=args.device, every=args.every, out_dir=out / "page", online=False)
    app.queue(default_concurrency_limit=1)
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    client = Client(url, verbose=False, download_files=False)  # as a browser elsewhere: the server does not pay for it

    def page(seed: int) -> None:
        client.predict(args.prompt, "mini", "mini-vanilla", seed=seed, api_name="/generate")

    def generate(seed: int) -> None:
        for model in ("mini", "mini-vanilla"):
            result = generate_tensor(args.prompt, model, seeds=seed, device=args.device, progress=False)
            result.to_pil()[0].save(out / f"{model}-{seed}.png")

    times: dict[str, list[float]] = {"page": [], "generate": []}
    try:
        for r in range(args.rounds + 1):  # round 0 warms both up
            order = [("page", page), ("generate", generate)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                fn(r)
                if r:
                    times[name].append(time.perf_counter() - start)
    finally:
        app.close()
    ratios = [p / g for p, g in zip(times["page"], times["generate"], strict=True)]
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {args.rounds} rounds, frames every "
          f"{args.every} steps, mini + mini-vanilla, preset mini")
    print(f"page (gradio_client) median {statistics.median(times['page']):.2f} s; clipag generate path median "
          f"{statistics.median(times['generate']):.2f} s; median ratio page / generate "
          f"{statistics.median(ratios):.3f} (per round: {', '.join(f'{x:.3f}' for x in ratios)})")


if __name__ == "__main__":
    main()

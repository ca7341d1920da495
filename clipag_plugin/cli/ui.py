"""``clipag ui``: serve the web page where robust and plain CLIP paint side by side."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipag ui",
        description="Serve a web page: type a prompt and watch two models (default: the robust mini CLIP and its "
                    "plain twin) paint it side by side, with live frames, the best image as PNG, an animation of the "
                    "run and the resolved settings. Tabs for CLIPDraw, CLIPStyler and VQGAN+CLIP (with the "
                    "[vqgan] extra and a VQGAN) run the apps the same way. Offline on the shipped mini models; "
                    "cached registry models are offered too. Needs the [ui] extra (Gradio).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  clipag ui                                   # http://127.0.0.1:7860\n"
               "  clipag ui --port 8080 --device cuda --max-size 384 --max-steps 300 --max-upload-mb 5\n"
               "  clipag ui --host 0.0.0.0                    # reachable from other machines (shared GPU box)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument("--max-size", type=int, default=512, help="largest image side a request may ask for")
    parser.add_argument("--max-steps", type=int, default=500, help="most steps a request may ask for")
    parser.add_argument("--max-upload-mb", type=float, default=20.0,
                        help="largest content photo a visitor may upload, in MB (CLIPStyler tab)")
    parser.add_argument("--every", type=int, default=10, help="steps between the frames the page shows")
    parser.add_argument("--quiet", action="store_true", help="no log lines, only the URL")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``clipag ui``; serves until interrupted (exit 0), 2 for bad input or a missing extra."""
    from .generate import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    for flag, value, low in (("--max-size", args.max_size, 16), ("--max-steps", args.max_steps, 1),
                             ("--every", args.every, 1), ("--port", args.port, 1),
                             ("--max-upload-mb", args.max_upload_mb, 0.01)):
        if value < low:
            print(f"clipag ui: error: {flag} {value} must be at least {low}", file=sys.stderr)
            return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from clipag_plugin.ui import Caps, build_app
        app = build_app(device=args.device, caps=Caps(max_size=args.max_size, max_steps=args.max_steps,
                                                           max_upload_mb=args.max_upload_mb),
                        every=args.every)
    except ImportError as err:
        print(f"clipag ui: {err}", file=sys.stderr)
        return 2
    app.queue(default_concurrency_limit=1)
    _, url, _ = app.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True, quiet=True,
                           footer_links=["api"])
    print(f"clipag ui: serving on {url} (Ctrl+C stops)", flush=True)
    try:
        app.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0

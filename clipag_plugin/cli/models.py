"""``clipag models``: the registry as a table, with what is already cached."""

from __future__ import annotations

import argparse
import json
import shutil
from typing import Optional, Sequence

from ..registry import REGISTRY, HubFiles, ModelEntry, PackagedFiles, UrlFile


def _source(entry: ModelEntry) -> str:
    src = entry.source
    if isinstance(src, HubFiles):
        return f"hf-hub:{src.repo_id}"
    if isinstance(src, UrlFile):
        return "zenodo:10446026"
    return "packaged"


def is_cached(entry: ModelEntry, download_root: Optional[str] = None) -> bool:
    """Whether ``load`` would find this model's weights without a network."""
    from .. import hub
    from ..loading import _packaged_folder

    src = entry.source
    if isinstance(src, PackagedFiles):
        return (_packaged_folder(src) / "open_clip_config.json").is_file()
    if isinstance(src, UrlFile):
        root = hub.cache_root(download_root)
        return (root / src.filename.replace(".pt", ".safetensors")).is_file() or (root / src.filename).is_file()
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(src.repo_id, src.weights_filename, cache_dir=download_root, revision=src.revision)
    return isinstance(found, str)


def latest_hub_commit(repo_id: str) -> str:
    """The commit ``main`` of a Hub repository points at now (network)."""
    from huggingface_hub import HfApi

    from .. import hub

    return HfApi(**hub.library_tags()).model_info(repo_id, revision="main").sha


def remote_size(url: str) -> Optional[int]:
    """The size a plain-URL host reports for ``url`` (HEAD request; network)."""
    import urllib.request

    from .. import __version__

    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": f"clipag-plugin/{__version__}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        length = response.headers.get("Content-Length")
    return int(length) if length else None


def check_entry(entry: ModelEntry) -> tuple[bool, str]:
    """Compare one registry entry with what its host serves now; change nothing.

    Returns ``(ok, message)``: ok is False when the pin is no longer the latest commit, the
    entry is not pinned, the host reports another size, or the host cannot be reached.
    """
    src = entry.source
    try:
        if isinstance(src, HubFiles):
            latest = latest_hub_commit(src.repo_id)
            if not src.pinned:
                return False, f"not pinned; main is at {latest} (pin it in registry.py)"
            if latest != src.revision:
                return False, f"pinned to {src.revision[:10]}, main has moved to {latest} (review, then re-pin)"
            return True, f"pinned to {src.revision[:10]}, the latest commit"
        if isinstance(src, UrlFile):
            size = remote_size(src.url)
            if size is not None and size != src.size_bytes:
                return False, f"the host reports {size:,} bytes, the registry {src.size_bytes:,}"
            return True, f"the host reports {size:,} bytes, as recorded" if size else "reachable (no size reported)"
    except Exception as err:  # network, HTTP or Hub errors: report, never fail the whole check
        return False, f"unreachable: {str(err).splitlines()[0][:160]}"
    return True, "shipped inside the package"


# the table's columns, most useful first: narrow terminals keep the first ones
COLUMN_ORDER = ("name", "robust", "cached", "preset", "size", "architecture", "source", "license", "threat model",
                "verified by")


def fit_columns(headers: Sequence[str], widths: dict, columns: int) -> tuple[list[str], list[str]]:
    """The columns (in table order) that fit ``columns`` characters, most useful first, and the rest.

    Args:
        headers: the table's columns, in their order.
        widths: each column's width.
        columns: the terminal's width.

    Returns:
        ``(shown, hidden)``; the name column is always shown.
    """
    keep, used = [], 0
    for header in sorted(headers, key=lambda h: COLUMN_ORDER.index(h) if h in COLUMN_ORDER else len(COLUMN_ORDER)):
        extra = widths[header] + (2 if keep else 0)
        if not keep or used + extra <= columns:
            keep.append(header)
            used += extra
    return [h for h in headers if h in keep], [h for h in headers if h not in keep]


def _size(entry: ModelEntry) -> str:
    if entry.size_bytes is None:
        return "-"
    return f"{entry.size_bytes / 1e6:,.0f} MB" if entry.size_bytes < 1e9 else f"{entry.size_bytes / 1e9:.2f} GB"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clipag models", description="List the models clipag.load accepts, their presets and what is cached.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  clipag models\n  clipag models --wide                 # every column\n"
               "  clipag models --json\n"
               "  clipag models --check                # network: are the pins still the latest?",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--wide", action="store_true",
                        help="every column, however wide (default: the columns that fit the terminal)")
    parser.add_argument("--download-root", default=None, help="cache folder to check (as in clipag.load)")
    parser.add_argument("--check", action="store_true",
                        help="ask each host whether its entry is still current (network; changes nothing); exit 1 "
                             "when a pin is stale, missing or a host disagrees")
    args = parser.parse_args(argv)
    if args.check:
        results = {entry.name: check_entry(entry) for entry in REGISTRY.values()}
        if args.json:
            print(json.dumps({name: {"ok": ok, "message": msg} for name, (ok, msg) in results.items()}, indent=2))
        else:
            width = max(map(len, results))
            for name, (ok, message) in results.items():
                print(f"{'ok  ' if ok else 'WARN'}  {name:<{width}}  {message}")
        return 0 if all(ok for ok, _ in results.values()) else 1
    rows = []
    for entry in REGISTRY.values():
        rows.append({
            "name": entry.name,
            "architecture": entry.architecture,
            "robust": "yes" if entry.robust else "NO",
            "threat model": entry.threat_model,
            "source": _source(entry),
            "size": _size(entry),
            "license": entry.license,
            "verified by": entry.verification,
            "preset": entry.preset,
            "cached": "yes" if is_cached(entry, args.download_root) else "no",
        })
    from ..synthesis.presets import PRESETS

    if args.json:
        for row in rows:
            row["preset_settings"] = PRESETS[row["preset"]].as_dict()
        print(json.dumps(rows, indent=2))
        return 0
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in rows)) for h in headers}
    hidden: list[str] = []
    if not args.wide:
        headers, hidden = fit_columns(headers, widths, shutil.get_terminal_size((100, 24)).columns)
    print("  ".join(h.ljust(widths[h]) for h in headers))
    print("  ".join("-" * widths[h] for h in headers))
    for r in rows:
        print("  ".join(str(r[h]).ljust(widths[h]) for h in headers))
    if hidden:
        print(f"\n(not shown, to fit the terminal: {', '.join(hidden)}; `clipag models --wide` or --json shows them)")
    print("\nverified by: sha256 = the weights' digest is checked (against the Hub's address on every load, the "
          "bytes on download); commit = a pinned revision; size only = no published digest.")
    print("Also accepted: 'hf-hub:org/repo[@revision]' (open_clip layout) and local paths (they use the global "
          "defaults).")
    print("\nGeneration presets (`clipag generate` applies the model's own; --preset NAME|none, flags win):")
    for preset in PRESETS.values():
        print(f"  {preset.name:<9} {preset.description}")
        if preset.settings:
            print(f"  {'':<9} {', '.join(f'{k}={v}' for k, v in preset.settings)}")
    return 0

"""``clipag models``: the registry as a table, with what is already cached."""

from __future__ import annotations

import argparse
import json
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


def _size(entry: ModelEntry) -> str:
    if entry.size_bytes is None:
        return "-"
    return f"{entry.size_bytes / 1e6:,.0f} MB" if entry.size_bytes < 1e9 else f"{entry.size_bytes / 1e9:.2f} GB"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clipag models", description="List the models clipag.load accepts, their presets and what is cached.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  clipag models\n  clipag models --json\n  clipag models --download-root /data/clipag-cache",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--download-root", default=None, help="cache folder to check (as in clipag.load)")
    args = parser.parse_args(argv)
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
    print("  ".join(h.ljust(widths[h]) for h in headers))
    print("  ".join("-" * widths[h] for h in headers))
    for r in rows:
        print("  ".join(str(r[h]).ljust(widths[h]) for h in headers))
    print("\nAlso accepted: 'hf-hub:org/repo' (open_clip layout) and local paths (they use the global defaults).")
    print("\nGeneration presets (`clipag generate` applies the model's own; --preset NAME|none, flags win):")
    for preset in PRESETS.values():
        print(f"  {preset.name:<9} {preset.description}")
        if preset.settings:
            print(f"  {'':<9} {', '.join(f'{k}={v}' for k, v in preset.settings)}")
    return 0

"""Downloads: Hugging Face Hub repositories and plain URLs, verified and cached.

Nothing here builds a model; functions return paths of verified files on disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from .registry import HubFiles, UrlFile

__all__ = [
    "OfflineError",
    "ChecksumError",
    "cache_root",
    "is_offline",
    "fetch_hub_file",
    "fetch_hub_folder",
    "fetch_url_file",
    "fetch_verified",
    "sha256_of",
]


class OfflineError(FileNotFoundError):
    """A file is not cached and cannot be downloaded (offline mode or no network)."""


class ChecksumError(OSError):
    """A downloaded file does not match its recorded size or sha256."""


def cache_root(download_root: Optional[str | os.PathLike] = None) -> Path:
    """Where plain-URL downloads and converted weights live.

    ``download_root`` wins, then ``$CLIPAG_CACHE``, then ``$XDG_CACHE_HOME/clipag``
    (``~/.cache/clipag``).

    Args:
        download_root: an explicit folder (``clipag.load``'s ``download_root``), or None.

    Returns:
        The cache folder (not created here).
    """
    if download_root is not None:
        return Path(download_root).expanduser()
    if os.environ.get("CLIPAG_CACHE"):
        return Path(os.environ["CLIPAG_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clipag"


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (as huggingface_hub reads it) or ``CLIPAG_OFFLINE`` is set.

    Returns:
        Whether downloads are switched off.
    """
    from huggingface_hub import constants

    flag = os.environ.get("CLIPAG_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    return bool(constants.HF_HUB_OFFLINE) or flag


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks.

    Args:
        path: the file.
        chunk_size: bytes read at a time.

    Returns:
        The lowercase hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_hub_file(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    cache_dir: Optional[str | os.PathLike] = None,
    what: str,
    fetch_hint: str,
) -> Path:
    """One file of a Hugging Face repo through ``hf_hub_download`` (its cache, tokens, offline mode).

    With nothing cached and no way to download, raises :class:`OfflineError` naming ``what``,
    the repo, the file and ``fetch_hint`` (how to fetch it ahead of time).

    Args:
        repo_id: ``"org/repo"`` on the Hub.
        filename: the file inside the repo.
        revision: branch, tag or commit hash.
        cache_dir: cache folder (default: the Hugging Face cache).
        what: names the thing in messages, e.g. ``"Model 'fare4-ViT-L/14'"``.
        fetch_hint: how to fetch the file ahead of time, quoted in the offline error.

    Returns:
        The path of the cached file.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=None if cache_dir is None else str(cache_dir),
                local_files_only=is_offline(),
            )
        )
    except LocalEntryNotFoundError as err:
        raise OfflineError(
            f"{what}: file {filename!r} of Hugging Face repo {repo_id!r} (revision {revision!r}) is not in "
            f"the cache and cannot be downloaded (offline mode, or no network). Fetch it ahead of time on a "
            f"connected machine with {fetch_hint}, then copy the cache folder over."
        ) from err


def fetch_hub_folder(
    src: HubFiles, name: str, cache_dir: Optional[str | os.PathLike] = None, progress: bool = True
) -> Path:
    """Download (or find in the cache) an open_clip-layout repo; return the snapshot folder.

    Only the config and the one weights file are fetched. ``cache_dir`` defaults to the
    Hugging Face cache (``HF_HUB_CACHE``), so tokens, mirrors and offline mode behave as
    everywhere else in the Hub ecosystem.

    Args:
        src: the registry's :class:`~clipag_plugin.registry.HubFiles`.
        name: the model name, for messages.
        cache_dir: cache folder (default: the Hugging Face cache).
        progress: show download progress bars.

    Returns:
        The snapshot folder holding the config and the weights.
    """
    paths = [
        fetch_hub_file(
            src.repo_id, filename, revision=src.revision, cache_dir=cache_dir, what=f"Model {name!r}",
            fetch_hint=f"`clipag download {name}` (or `hf download {src.repo_id} {filename}`)",
        )
        for filename in (src.config_filename, src.weights_filename)
    ]
    folder = paths[0].parent
    if paths[1].parent != folder:  # both files resolve into the same snapshot normally
        raise OSError(f"Model {name!r}: config and weights of {src.repo_id!r} resolved to different snapshots")
    return folder


Transport = Callable[[str, Path, Optional[int], bool], None]


def _http_stream(url: str, dest: Path, expected_size: Optional[int], progress: bool) -> None:
    """Stream ``url`` into ``dest`` with a progress bar."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "clipag-plugin"})
    with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or expected_size
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))


def _verify(path: Path, size: Optional[int], sha256: Optional[str]) -> Optional[str]:
    """Return why ``path`` fails verification, or None when it passes (unknown fields are skipped)."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size {actual:,} bytes, expected {size:,}"
    if sha256 is not None:
        digest = sha256_of(path)
        if digest != sha256:
            return f"sha256 {digest}, expected {sha256}"
    return None


def fetch_verified(
    url: str,
    target: Path,
    *,
    what: str,
    fetch_hint: str,
    size: Optional[int] = None,
    sha256: Optional[str] = None,
    progress: bool = True,
    transport: Optional[Transport] = None,
) -> Path:
    """Download ``url`` to ``target`` once, verified by size and sha256 where known; return ``target``.

    A cached file that fails verification is downloaded again once; a download that fails
    verification is deleted and raises :class:`ChecksumError`. ``what`` names the thing in
    messages (e.g. ``"Model 'ViT-B/32'"``); ``fetch_hint`` says how to fetch it ahead of time.

    Args:
        url: where to download from.
        target: the final path; the download goes to ``target + ".part"`` first.
        what: names the thing in messages.
        fetch_hint: how to fetch it ahead of time, quoted in errors.
        size: expected size in bytes, or None.
        sha256: expected hex digest, or None.
        progress: show a progress bar.
        transport: replaces the HTTP download (tests).

    Returns:
        ``target``, verified.
    """
    if target.is_file():
        if _verify(target, size, sha256) is None:
            return target
        target.unlink()  # a bad cached file is never kept; fall through to one fresh download
    if is_offline():
        raise OfflineError(
            f"{what}: {target.name} is not in the cache ({target.parent}) and offline mode is on. {fetch_hint}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        (transport or _http_stream)(url, partial, size, progress)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise OfflineError(f"{what}: could not download {url} ({err}). Check the network; {fetch_hint}") from err
    problem = _verify(partial, size, sha256)
    if problem is not None:
        partial.unlink(missing_ok=True)
        raise ChecksumError(
            f"{what}: the download of {url} is corrupt or truncated ({problem}); it was deleted. "
            f"Try again; if it persists, the file on the server changed."
        )
    shutil.move(str(partial), target)
    return target


def fetch_url_file(
    src: UrlFile,
    name: str,
    download_root: Optional[str | os.PathLike] = None,
    progress: bool = True,
    transport: Optional[Transport] = None,
) -> Path:
    """Download a registry ``UrlFile`` into the cache once, verified; return its path.

    When the record has no sha256 yet, only the size is verified (see ``docs/models.md``).

    Args:
        src: the registry's :class:`~clipag_plugin.registry.UrlFile`.
        name: the model name, for messages.
        download_root: cache folder (see :func:`cache_root`).
        progress: show a progress bar.
        transport: replaces the HTTP download (tests).

    Returns:
        The path of the verified file in the cache.
    """
    folder = cache_root(download_root)
    return fetch_verified(
        src.url,
        folder / src.filename,
        what=f"Model {name!r}",
        fetch_hint=(
            f"Run `clipag download {name}` on a connected machine (or put the file from {src.url} "
            f"into {folder}, or pass download_root=)."
        ),
        size=src.size_bytes,
        sha256=src.sha256,
        progress=progress,
        transport=transport,
    )

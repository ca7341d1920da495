"""Downloads: Hugging Face Hub repositories and plain URLs, verified and cached.

Nothing here builds a model; functions return paths of verified files on disk.

* Hub files go through ``huggingface_hub`` (its cache, tokens, mirrors, offline mode), tagged
  with this library's name and version as open_clip and timm tag theirs. A recorded sha256 is
  checked against the Hub's content address on every load and against the bytes themselves
  whenever a file is downloaded.
* Plain-URL files stream into ``<name>.part`` and resume from where an interrupted transfer
  stopped (HTTP Range); the file gets its real name only once its size and digests verify.
* A cached file that fails verification is reported with its path and replaced only by a copy
  that verifies; offline it is an error, never a silent switch to another model.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Optional

from .registry import HubFiles, UrlFile

__all__ = [
    "OfflineError",
    "IncompleteDownloadError",
    "ChecksumError",
    "cache_root",
    "is_offline",
    "fetch_hub_file",
    "fetch_hub_folder",
    "fetch_url_file",
    "fetch_verified",
    "download_lock",
    "sha256_of",
    "digests_of",
    "library_tags",
]

logger = logging.getLogger(__name__)


class OfflineError(FileNotFoundError):
    """A file is not cached and cannot be downloaded (offline mode or no network)."""


class IncompleteDownloadError(OfflineError):
    """A transfer stopped before the end; the partial file is kept and the next try resumes it."""


class ChecksumError(OSError):
    """A file does not match its recorded size or digest (corrupt, truncated or changed upstream).

    Never a reason to fall back to another model: the message names the file, the expected and
    the actual value.
    """


def library_tags() -> dict[str, str]:
    """How Hub requests identify this library (``library_name``/``library_version``, as open_clip's do).

    Returns:
        Keyword arguments for ``huggingface_hub`` download and API calls.
    """
    from . import __version__

    return {"library_name": "clipag-plugin", "library_version": __version__}


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


def digests_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> dict[str, str]:
    """The sha256 and md5 of a file, read once.

    Args:
        path: the file.
        chunk_size: bytes read at a time.

    Returns:
        ``{"sha256": hex, "md5": hex}``.
    """
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            sha.update(chunk)
            md5.update(chunk)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def _hub_blob_digest(path: Path) -> Optional[str]:
    """The sha256 the Hub addressed a cached file by (its blob's name), when the cache says so."""
    try:
        name = path.resolve().name
    except OSError:
        return None
    return name if len(name) == 64 and set(name) <= set("0123456789abcdef") else None


def _check_hub_digest(path: Path, sha256: str, *, full: bool) -> Optional[str]:
    """Why ``path`` does not match ``sha256``, or None. ``full`` hashes the bytes, else only the address."""
    addressed = _hub_blob_digest(path)
    if addressed is not None and addressed != sha256:
        return f"the Hub addresses it as sha256 {addressed}, expected {sha256}"
    if full:
        actual = sha256_of(path)
        if actual != sha256:
            return f"sha256 {actual}, expected {sha256}"
    return None


def _remove_hub_file(path: Path) -> None:
    """Delete a cached Hub file and, when it is a link into the blob store, its blob."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def fetch_hub_file(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    cache_dir: Optional[str | os.PathLike] = None,
    what: str,
    fetch_hint: str,
    sha256: Optional[str] = None,
    verify: bool = False,
) -> Path:
    """One file of a Hugging Face repo through ``hf_hub_download`` (its cache, tokens, offline mode).

    With nothing cached and no way to download, raises :class:`OfflineError` naming ``what``,
    the repo, the file and ``fetch_hint`` (how to fetch it ahead of time). With ``sha256``, a
    file the Hub addresses by another digest is refused on every call, and a file downloaded by
    this call (or any file, with ``verify``) has its bytes hashed; a bad download is fetched
    again once, then removed and reported with :class:`ChecksumError`.

    Args:
        repo_id: ``"org/repo"`` on the Hub.
        filename: the file inside the repo.
        revision: branch, tag or commit hash.
        cache_dir: cache folder (default: the Hugging Face cache).
        what: names the thing in messages, e.g. ``"Model 'fare4-ViT-L/14'"``.
        fetch_hint: how to fetch the file ahead of time, quoted in the offline error.
        sha256: the file's recorded digest, or None.
        verify: hash the bytes even when the file was already cached.

    Returns:
        The path of the cached file.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = None if cache_dir is None else str(cache_dir)
    label = f"{filename!r} of Hugging Face repo {repo_id!r} (revision {revision!r})"

    def download(force: bool) -> Path:
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache,
                                        local_files_only=is_offline(), force_download=force, **library_tags()))
        except LocalEntryNotFoundError as err:
            raise OfflineError(
                f"{what}: file {label} is not in the cache and cannot be downloaded (offline mode, or no "
                f"network). Fetch it ahead of time on a connected machine with {fetch_hint}, then copy the "
                f"cache folder over."
            ) from err

    was_cached = isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision), str)
    path = download(force=False)
    if sha256 is None:
        return path
    problem = _check_hub_digest(path, sha256, full=verify or not was_cached)
    if problem is None:
        return path
    logger.warning("%s: %s in %s does not verify (%s); fetching a fresh copy", what, label, path, problem)
    if is_offline():
        raise ChecksumError(
            f"{what}: the cached file {path} ({label}) does not verify: {problem}. Offline, it cannot be "
            f"replaced; on a connected machine run {fetch_hint} again."
        )
    path = download(force=True)
    problem = _check_hub_digest(path, sha256, full=True)
    if problem is not None:
        _remove_hub_file(path)
        raise ChecksumError(
            f"{what}: the download of {label} does not verify: {problem}; it was removed from the cache. "
            f"The file on the Hub is not the one this version of clipag-plugin knows."
        )
    return path


def fetch_hub_folder(
    src: HubFiles,
    name: str,
    cache_dir: Optional[str | os.PathLike] = None,
    progress: bool = True,
    verify: bool = False,
) -> Path:
    """Download (or find in the cache) an open_clip-layout repo; return the snapshot folder.

    Only the config and the one weights file are fetched. ``cache_dir`` defaults to the
    Hugging Face cache (``HF_HUB_CACHE``), so tokens, mirrors and offline mode behave as
    everywhere else in the Hub ecosystem. The weights are checked against ``src.sha256``.

    Args:
        src: the registry's :class:`~clipag_plugin.registry.HubFiles`.
        name: the model name, for messages.
        cache_dir: cache folder (default: the Hugging Face cache).
        progress: show download progress bars.
        verify: hash the weights even when they were already cached (``clipag download``).

    Returns:
        The snapshot folder holding the config and the weights.
    """
    what = f"Model {name!r}"
    hint = f"`clipag download {name}`"
    config = fetch_hub_file(src.repo_id, src.config_filename, revision=src.revision, cache_dir=cache_dir,
                            what=what, fetch_hint=f"{hint} (or `hf download {src.repo_id} {src.config_filename}`)")
    weights = fetch_hub_file(src.repo_id, src.weights_filename, revision=src.revision, cache_dir=cache_dir,
                             what=what, fetch_hint=f"{hint} (or `hf download {src.repo_id} {src.weights_filename}`)",
                             sha256=src.sha256, verify=verify)
    folder = config.parent
    if weights.parent != folder:  # both files resolve into the same snapshot normally
        raise OSError(f"Model {name!r}: config and weights of {src.repo_id!r} resolved to different snapshots")
    return folder


Transport = Callable[[str, Path, Optional[int], bool], None]
"""``transport(url, dest, expected_size, progress)`` writes ``url``'s bytes into ``dest``,
appending when ``dest`` holds the start of the file already and the server can resume."""


def _http_stream(url: str, dest: Path, expected_size: Optional[int], progress: bool) -> None:
    """Stream ``url`` into ``dest`` with a progress bar, resuming a partial ``dest`` (HTTP Range)."""
    from tqdm.auto import tqdm

    from . import __version__

    offset = dest.stat().st_size if dest.is_file() else 0
    if expected_size is not None and offset > expected_size:
        offset = 0  # longer than the real file: start over
    if expected_size is not None and offset == expected_size:
        return  # already complete; verification decides
    headers = {"User-Agent": f"clipag-plugin/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        resumed = offset > 0 and response.status == 206
        if offset and not resumed:
            logger.info("%s: the server cannot resume; downloading from the start", dest.name)
            offset = 0
        elif resumed:
            logger.info("%s: resuming at byte %d", dest.name, offset)
        length = int(response.headers.get("Content-Length") or 0)
        total = offset + length if length else expected_size
        with open(dest, "ab" if resumed else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))


def _verify(path: Path, size: Optional[int], sha256: Optional[str], md5: Optional[str] = None) -> Optional[str]:
    """Return why ``path`` fails verification, or None when it passes (unknown fields are skipped)."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size {actual:,} bytes, expected {size:,}"
    if sha256 is not None or md5 is not None:
        digests = digests_of(path)
        for kind, expected in (("sha256", sha256), ("md5", md5)):
            if expected is not None and digests[kind] != expected:
                return f"{kind} {digests[kind]}, expected {expected}"
    return None


def fetch_verified(
    url: str,
    target: Path,
    *,
    what: str,
    fetch_hint: str,
    size: Optional[int] = None,
    sha256: Optional[str] = None,
    md5: Optional[str] = None,
    progress: bool = True,
    transport: Optional[Transport] = None,
) -> Path:
    """Download ``url`` to ``target`` once, verified by size and digests where known; return ``target``.

    The bytes go to ``target.part`` first; an interrupted transfer keeps it, and the next call
    resumes from there (:class:`IncompleteDownloadError` says so). A complete download that
    fails verification is deleted and raises :class:`ChecksumError` naming the expected and the
    actual value. A cached ``target`` that fails verification is reported with its path and
    replaced only by a download that verifies; offline, it is a :class:`ChecksumError`.

    Args:
        url: where to download from.
        target: the final path.
        what: names the thing in messages, e.g. ``"Model 'ViT-B/32'"``.
        fetch_hint: how to fetch it ahead of time, quoted in errors.
        size: expected size in bytes, or None.
        sha256: expected hex sha256, or None.
        md5: expected hex md5 (what hosts such as Zenodo publish), or None.
        progress: show a progress bar.
        transport: replaces the HTTP download (tests).

    Returns:
        ``target``, verified.
    """
    if target.is_file() and _verify(target, size, sha256, md5) is None:
        return target
    if is_offline():  # nothing will be downloaded: the errors need no lock
        return _fetch_verified_locked(url, target, what=what, fetch_hint=fetch_hint, size=size, sha256=sha256,
                                      md5=md5, progress=progress, transport=transport)
    target.parent.mkdir(parents=True, exist_ok=True)
    with download_lock(target, what):  # one download per file across processes; the others wait, then verify
        return _fetch_verified_locked(url, target, what=what, fetch_hint=fetch_hint, size=size, sha256=sha256,
                                      md5=md5, progress=progress, transport=transport)


@contextlib.contextmanager
def download_lock(target: Path, what: str = "") -> Iterator[None]:
    """Hold ``target``'s download lock (an OS file lock in ``.locks/`` beside it) inside the block.

    Other processes fetching the same file wait here (one notice) and then find it downloaded. The
    operating system releases the lock when its holder exits, even after ``kill -9``, so a dead
    process never blocks the next one. The small lock files stay, as huggingface_hub's do.

    Args:
        target: the file being fetched or written.
        what: names it in the waiting notice.

    Returns:
        A context manager.
    """
    from filelock import FileLock, Timeout

    locks = target.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(locks / (target.name + ".lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("%s: another process is fetching %s; waiting for it", what or "download", target.name)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _fetch_verified_locked(url: str, target: Path, *, what: str, fetch_hint: str, size: Optional[int],
                           sha256: Optional[str], md5: Optional[str], progress: bool,
                           transport: Optional[Transport]) -> Path:
    """:func:`fetch_verified` once the download lock is held."""
    corrupt = None
    if target.is_file():
        corrupt = _verify(target, size, sha256, md5)
        if corrupt is None:
            return target  # another process finished it while this one waited
        logger.warning("%s: cached file %s does not verify (%s); it is replaced once a fresh download verifies",
                       what, target, corrupt)
    if is_offline():
        if corrupt is not None:
            raise ChecksumError(
                f"{what}: the cached file {target} does not verify ({corrupt}) and offline mode is on, so it "
                f"cannot be replaced. {fetch_hint}"
            )
        raise OfflineError(
            f"{what}: {target.name} is not in the cache ({target.parent}) and offline mode is on. {fetch_hint}"
        )
    partial = target.with_name(target.name + ".part")
    try:
        (transport or _http_stream)(url, partial, size, progress)
    except (OSError, http.client.HTTPException) as err:
        kept = partial.stat().st_size if partial.is_file() else 0
        if isinstance(err, urllib.error.HTTPError) and err.code == 416:
            partial.unlink(missing_ok=True)  # the server refused our range: start over next time
            kept = 0
        resume = f" {kept:,} bytes are kept in {partial}; the next try resumes there." if kept else ""
        raise IncompleteDownloadError(
            f"{what}: the download of {url} stopped ({err}).{resume} Check the network; {fetch_hint}"
        ) from err
    got = partial.stat().st_size
    if size is not None and got < size:
        raise IncompleteDownloadError(
            f"{what}: the download of {url} ended after {got:,} of {size:,} bytes; the partial file {partial} "
            f"is kept and the next try resumes it. {fetch_hint}"
        )
    problem = _verify(partial, size, sha256, md5)
    if problem is not None:
        partial.unlink(missing_ok=True)
        raise ChecksumError(
            f"{what}: the download of {url} into {target} does not verify ({problem}); it was deleted"
            + (f" and the corrupt cached copy {target} is left as it was" if corrupt else "")
            + ". Try again; if it persists, the file on the server changed."
        )
    os.replace(partial, target)  # atomic: a corrupt cached copy is replaced only now
    return target


def fetch_url_file(
    src: UrlFile,
    name: str,
    download_root: Optional[str | os.PathLike] = None,
    progress: bool = True,
    transport: Optional[Transport] = None,
) -> Path:
    """Download a registry ``UrlFile`` into the cache once, verified; return its path.

    The size is always verified, the sha256 and md5 when the registry records them (see
    ``docs/models.md``).

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
        md5=src.md5,
        progress=progress,
        transport=transport,
    )

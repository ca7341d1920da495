"""Downloads: resumable plain-URL transfers (a local HTTP server on 127.0.0.1), digests of Hub
files (a seeded cache in the Hub's blob layout), library tags, and ``clipag models --check``."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from pathlib import Path

import pytest

import clipag
from clipag_plugin import hub, registry
from clipag_plugin.registry import HubFiles, ModelEntry

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every byte position distinguishable


class _Server:
    """A tiny HTTP server on 127.0.0.1 serving one file, with switchable faults."""

    def __init__(self, body: bytes):
        self.body = body
        self.cut_after: int | None = None  # close the connection after this many body bytes
        self.honour_range = True
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                start = 0
                if requested and server.honour_range:
                    start = int(requested.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.body) - 1}/{len(server.body)}")
                else:
                    self.send_response(200)
                body = server.body[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[: server.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/weights.pt"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = _Server(PAYLOAD)
    yield srv
    srv.close()


@pytest.fixture
def online(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("CLIPAG_OFFLINE", raising=False)


def _fetch(server, target: Path, **digests):
    return hub.fetch_verified(server.url, target, what="Test file", fetch_hint="(hint)", size=len(PAYLOAD),
                              progress=False, **digests)


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path, online):
    target = tmp_path / "weights.pt"
    server.cut_after = 300_000
    with pytest.raises(hub.IncompleteDownloadError, match="resumes") as info:
        _fetch(server, target, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert "300,000" in str(info.value) and "weights.pt.part" in str(info.value)
    partial = tmp_path / "weights.pt.part"
    assert partial.stat().st_size == 300_000 and not target.exists()
    server.cut_after = None
    path = _fetch(server, target, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert server.ranges == [None, "bytes=300000-"]
    assert path.read_bytes() == PAYLOAD and not partial.exists()


def test_server_without_range_support_restarts_cleanly(server, tmp_path, online):
    target = tmp_path / "weights.pt"
    (tmp_path / "weights.pt.part").write_bytes(PAYLOAD[:1000])
    server.honour_range = False
    path = _fetch(server, target, md5=hashlib.md5(PAYLOAD).hexdigest())
    assert server.ranges == ["bytes=1000-"]
    assert path.read_bytes() == PAYLOAD


def test_wrong_digest_names_both_digests_and_leaves_nothing(server, tmp_path, online):
    target = tmp_path / "weights.pt"
    wrong = "0" * 64
    with pytest.raises(hub.ChecksumError) as info:
        _fetch(server, target, sha256=wrong)
    message = str(info.value)
    assert wrong in message and hashlib.sha256(PAYLOAD).hexdigest() in message and str(target) in message
    assert [p for p in tmp_path.iterdir() if p.name != ".locks"] == []  # (.locks/ holds the download locks)


def test_wrong_md5_is_caught_like_a_wrong_sha256(server, tmp_path, online):
    with pytest.raises(hub.ChecksumError, match="md5"):
        _fetch(server, tmp_path / "weights.pt", md5="f" * 32)


def test_longer_file_than_recorded_is_a_size_error(server, tmp_path, online):
    server.body = PAYLOAD + b"extra"
    with pytest.raises(hub.ChecksumError, match="size"):
        _fetch(server, tmp_path / "weights.pt")
    assert [p for p in tmp_path.iterdir() if p.name != ".locks"] == []  # (.locks/ holds the download locks)


def test_corrupt_cached_file_is_replaced_only_by_a_verified_copy(server, tmp_path, online, caplog):
    target = tmp_path / "weights.pt"
    target.write_bytes(b"\0" * len(PAYLOAD))
    path = _fetch(server, target, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert path.read_bytes() == PAYLOAD
    assert str(target) in caplog.text and "does not verify" in caplog.text


def test_corrupt_cached_file_offline_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    """Offline, a corrupt file is reported (path, expected, actual) and kept; load_or_fallback
    does not hide it behind the mini model."""
    from clipag_plugin.loading import load_or_fallback

    monkeypatch.setenv("CLIPAG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLIPAG_OFFLINE", "1")
    entry = ModelEntry("url-test", registry.UrlFile(url="http://127.0.0.1:9/x.pt", filename="x.pt", size_bytes=4,
                                                    sha256="a" * 64), "ViT-B-32", True, "L2", "-", "MIT", 4, "t")
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "x.pt").write_bytes(b"abcd")
    with pytest.raises(hub.ChecksumError) as info:
        load_or_fallback("url-test", device="cpu")
    message = str(info.value)
    assert str(tmp_path / "cache" / "x.pt") in message and "a" * 64 in message
    assert hashlib.sha256(b"abcd").hexdigest() in message
    assert (tmp_path / "cache" / "x.pt").read_bytes() == b"abcd"


# --- Hub files -------------------------------------------------------------------------------


def _seed_blob_layout(cache: Path, repo_id: str, files: dict[str, bytes], commit: str, main: str) -> Path:
    """The Hub cache as huggingface_hub writes it: blobs named by digest, snapshots linking to them."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(main)
    (repo / "blobs").mkdir(exist_ok=True)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / name).symlink_to(blob)
    return snap


def _tiny_files(tiny_model_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in tiny_model_dir.iterdir()}


def _hub_entry(monkeypatch, revision: str, sha256: str | None) -> ModelEntry:
    entry = ModelEntry("hub-test", HubFiles("org/tiny", revision=revision, sha256=sha256), "tiny", True, "L2", "-",
                       "MIT", None, "t")
    monkeypatch.setitem(registry.REGISTRY, entry.name, entry)
    return entry


def test_pinned_revision_is_what_loads_even_when_main_moved(offline_hub, tiny_model_dir, monkeypatch):
    files = _tiny_files(tiny_model_dir)
    pin, moved = "1" * 40, "2" * 40
    _seed_blob_layout(offline_hub, "org/tiny", files, commit=pin, main=moved)  # main points elsewhere
    digest = hashlib.sha256(files["open_clip_model.safetensors"]).hexdigest()
    _hub_entry(monkeypatch, pin, digest)
    model, _ = clipag.load("hub-test", device="cpu")
    assert model.name == "hub-test"
    assert registry.REGISTRY["hub-test"].verification == f"sha256 + commit {pin[:10]}"


def test_hub_file_with_another_digest_is_refused_offline(offline_hub, tiny_model_dir, monkeypatch):
    from clipag_plugin.loading import load_or_fallback

    files = _tiny_files(tiny_model_dir)
    snap = _seed_blob_layout(offline_hub, "org/tiny", files, commit="1" * 40, main="1" * 40)
    _hub_entry(monkeypatch, "1" * 40, "b" * 64)
    with pytest.raises(hub.ChecksumError) as info:
        load_or_fallback("hub-test", device="cpu", fallback=str(tiny_model_dir))
    message = str(info.value)
    assert "b" * 64 in message and hashlib.sha256(files["open_clip_model.safetensors"]).hexdigest() in message
    assert str(snap / "open_clip_model.safetensors") in message


def test_hub_download_is_hashed_tagged_and_a_bad_one_removed(tmp_path, monkeypatch, online):
    """A fresh download's bytes are hashed; a mismatch is fetched once more, then removed and reported.
    Every request names the library (as open_clip's and timm's do)."""
    import huggingface_hub

    from clipag_plugin import __version__

    calls = []
    data = b"not the weights the registry knows"

    def fake_download(repo_id, filename, *, revision, cache_dir, local_files_only, force_download, **tags):
        calls.append({"force": force_download, **tags})
        path = tmp_path / "snap" / filename
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(hub.ChecksumError, match="removed from the cache") as info:
        hub.fetch_hub_file("org/x", "w.safetensors", revision="1" * 40, what="Model 'x'", fetch_hint="(hint)",
                           sha256="c" * 64)
    assert hashlib.sha256(data).hexdigest() in str(info.value)
    assert [c["force"] for c in calls] == [False, True]
    assert all(c["library_name"] == "clipag-plugin" and c["library_version"] == __version__ for c in calls)
    assert not (tmp_path / "snap" / "w.safetensors").exists()
    # the right digest passes, and is hashed because the file was not cached before
    path = hub.fetch_hub_file("org/x", "w.safetensors", what="Model 'x'", fetch_hint="(hint)",
                              sha256=hashlib.sha256(data).hexdigest())
    assert path.read_bytes() == data


# --- the registry and `clipag models --check` ----------------------------------------------


def test_every_hub_entry_is_pinned_or_says_it_is_not():
    for entry in registry.REGISTRY.values():
        src = entry.source
        if isinstance(src, HubFiles):
            assert src.pinned or src.revision == "main", entry.name
            assert ("commit " + src.revision[:10]) in entry.verification if src.pinned else \
                "unpinned" in entry.verification
            if src.sha256 is not None:
                assert len(src.sha256) == 64 and int(src.sha256, 16) >= 0
    assert registry.is_commit_hash("0" * 40) and not registry.is_commit_hash("main")
    assert registry.REGISTRY["ViT-B/32"].verification == "size only"


def test_models_table_says_how_each_entry_is_verified(capsys):
    from clipag_plugin.cli import main

    assert main(["models", "--wide"]) == 0  # the full table, whatever the terminal's width
    out = capsys.readouterr().out
    assert "verified by" in out and "size only" in out and "unpinned (main)" in out and "commit 6bc37e8efa" in out


def test_models_check_reports_stale_and_missing_pins(monkeypatch, capsys):
    from clipag_plugin.cli import main
    from clipag_plugin.cli import models as models_cli

    fare2 = registry.REGISTRY["fare2-ViT-L/14"].source

    def latest(repo_id):
        if repo_id == fare2.repo_id:
            return fare2.revision
        if repo_id == "chs20/tecoa4-clip":
            raise OSError("connection refused")
        return "9" * 40

    monkeypatch.setattr(models_cli, "latest_hub_commit", latest)
    monkeypatch.setattr(models_cli, "remote_size", lambda url: registry.REGISTRY["ViT-B/32"].source.size_bytes)
    assert main(["models", "--check"]) == 1
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["fare2-ViT-L/14"].startswith("ok") and "the latest commit" in lines["fare2-ViT-L/14"]
    assert lines["fare4-ViT-L/14"].startswith("WARN") and "moved to " + "9" * 40 in lines["fare4-ViT-L/14"]
    assert lines["tecoa4-ViT-L/14"].startswith("WARN") and "unreachable" in lines["tecoa4-ViT-L/14"]
    assert "not pinned" in lines["fare4-ViT-B/32-laion2b"]
    assert lines["ViT-B/32"].startswith("ok") and "as recorded" in lines["ViT-B/32"]
    assert lines["mini"].startswith("ok")


_FETCH_IN_A_PROCESS = """
import sys
from pathlib import Path
from clipag_plugin import hub
path = hub.fetch_verified(sys.argv[1], Path(sys.argv[2]), what="Test file", fetch_hint="(hint)",
                          size=int(sys.argv[3]), sha256=sys.argv[4], progress=False)
print(path.stat().st_size)
"""


def test_several_processes_fetching_one_file_share_one_transfer(tmp_path, monkeypatch):
    """As every rank of a torchrun job loading a model into an empty cache: one process downloads,
    the others wait for its lock and find the verified file."""
    import hashlib
    import subprocess
    import sys

    body = bytes(range(256)) * 4096  # 1 MiB, served slowly so that the processes overlap
    slow = _Server(body)
    original = slow.httpd.RequestHandlerClass.do_GET

    def do_get(handler):
        time.sleep(0.5)
        original(handler)

    slow.httpd.RequestHandlerClass.do_GET = do_get
    monkeypatch.delenv("CLIPAG_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    target = tmp_path / "cache" / "weights.pt"
    args = [slow.url, str(target), str(len(body)), hashlib.sha256(body).hexdigest()]
    try:
        workers = [subprocess.Popen([sys.executable, "-c", _FETCH_IN_A_PROCESS, *args], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outputs = [w.communicate(timeout=120) for w in workers]
    finally:
        slow.close()
    assert [w.returncode for w in workers] == [0] * 4, [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [str(len(body))] * 4
    assert len(slow.ranges) == 1  # one transfer
    assert target.read_bytes() == body and not target.with_name("weights.pt.part").exists()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    import signal
    import subprocess
    import sys

    target = tmp_path / "weights.pt"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom clipag_plugin import hub\n"
        f"with hub.download_lock(Path({str(target)!r})):\n    print('locked', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    start = time.monotonic()
    with hub.download_lock(target):
        waited = time.monotonic() - start
    assert waited < 5 and (tmp_path / ".locks" / "weights.pt.lock").exists()

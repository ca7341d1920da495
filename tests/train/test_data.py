"""Data sources: formats, corrupt-sample skipping, sharding across ranks/workers, exact resume positions."""

from __future__ import annotations

import itertools

import pytest
import torch

from clipag_plugin.train.data import (
    CaptionStream,
    csv_source,
    detect_format,
    expand_shards,
    folder_source,
    make_loader,
    open_source,
)

from .conftest import caption_of, write_caption_folder, write_tar_shards


def _take(stream_or_loader, n):
    return list(itertools.islice(iter(stream_or_loader), n))


def test_folder_source_skips_and_counts_corrupt_samples(tmp_path):
    folder = write_caption_folder(tmp_path / "f", 10, corrupt=3)
    source = folder_source(folder)
    assert len(source) == 13  # broken bytes, blank caption and missing caption are all listed...
    stream = CaptionStream(source, batch_size=5, resolution=16, shuffle=False)
    first, second, third = _take(stream, 3)
    assert first["images"].shape == (5, 3, 16, 16) and first["tokens"].shape == (5, 77)
    assert float(first["images"].min()) >= 0 and float(first["images"].max()) <= 1
    # ...and skipped when read: the corrupt files sort last, so the third batch starts epoch 1
    assert second["state"] == {"epoch": 0, "consumed": 10, "skipped": 0}
    assert third["state"] == {"epoch": 1, "consumed": 5, "skipped": 3}
    assert torch.equal(third["tokens"], first["tokens"])  # unshuffled: epoch 1 repeats epoch 0


def test_tar_shards_stream_with_corrupt_images_and_truncated_shard(tmp_path):
    shards = write_tar_shards(tmp_path / "tars", 12, shards=3, corrupt_every=6)
    truncated = tmp_path / "tars" / "00003.tar"
    truncated.write_bytes(shards[0].read_bytes()[:1500])  # cut mid-member
    assert expand_shards(str(tmp_path / "tars" / "{00000..00002}.tar")) == [str(s) for s in shards]
    assert detect_format(str(tmp_path / "tars")) == "tar"
    source = open_source(str(tmp_path / "tars"), shuffle_buffer=4)
    records = list(source.epoch(0, 0, 0, 1, 1))
    good = [r for r in records if r.caption is not None]
    assert {r.caption.decode() for r in good} >= {caption_of(i) for i in range(12)}
    assert source.read_errors == 1
    stream = CaptionStream(source, batch_size=4, resolution=16, seed=0)
    batches = _take(stream, 3)
    assert all(b["images"].shape == (4, 3, 16, 16) for b in batches)
    assert batches[-1]["state"]["skipped"] >= 2  # samples 5 and 11 have broken PNGs


def test_csv_source_and_errors(tmp_path):
    folder = write_caption_folder(tmp_path / "imgs", 4)
    (tmp_path / "d.csv").write_text("path,caption\n" + "".join(f"imgs/{i:05d}.png,{caption_of(i)}\n" for i in range(4))
                                    + "imgs/missing.png,a missing file\n")
    source = csv_source(tmp_path / "d.csv")
    stream = CaptionStream(source, batch_size=2, resolution=8, shuffle=False)
    b1, b2 = _take(stream, 2)
    assert b2["state"] == {"epoch": 0, "consumed": 4, "skipped": 0}
    b3 = _take(CaptionStream(source, 5, 8, shuffle=False), 1)[0]
    assert b3["state"]["skipped"] == 1 and b3["state"]["epoch"] == 1
    with pytest.raises(KeyError, match="csv_path_column"):
        csv_source(tmp_path / "d.csv", path_column="file")
    with pytest.raises(ValueError, match="cannot tell its format"):
        detect_format(str(tmp_path / "nowhere"))
    assert folder.exists()


def _micro_batch(source, batch, rank, world, workers, m):
    """Micro-batch ``m`` of ``rank``: the DataLoader takes it from worker ``m % workers`` (its ``m // workers``-th)."""
    stream = CaptionStream(source, batch, 8, seed=3, rank=rank, world_size=world, num_workers=workers,
                           start_micro=m % workers)
    return _take(stream, m // workers + 1)[-1]["tokens"]


@pytest.mark.parametrize("workers", [1, 2])
def test_global_batch_does_not_depend_on_world_size(tmp_path, workers):
    source = folder_source(write_caption_folder(tmp_path / "f", 24))
    for m in range(5):  # crosses an epoch boundary (24 samples = 6 global batches of 4; 5 x 4 = 20 with 2 workers)
        single = _micro_batch(source, 4, 0, 1, workers, m)
        split = torch.cat([_micro_batch(source, 2, r, 2, workers, m) for r in range(2)])
        assert torch.equal(single, split)


def test_loader_resume_continues_exactly_with_two_workers(tmp_path):
    source = folder_source(write_caption_folder(tmp_path / "f", 10, corrupt=2))
    full = _take(make_loader(CaptionStream(source, 3, 8, seed=1, num_workers=2), 2), 9)
    consumed = 5
    states = {}
    for batch in full[:consumed]:
        states[int(batch["worker"])] = batch["state"]
    resumed = CaptionStream(source, 3, 8, seed=1, num_workers=2, start_states=[states[0], states[1]],
                            start_micro=consumed)
    rest = _take(make_loader(resumed, 2), 4)
    for a, b in zip(full[consumed:], rest, strict=True):
        assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["images"], b["images"])
        assert a["state"] == b["state"]


def _serve(folder):
    """Serve ``folder`` over HTTP on 127.0.0.1; returns (base URL, server)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def test_streamed_shards_pipe_and_http_read_like_local_ones_and_resume_exactly(tmp_path):
    write_tar_shards(tmp_path / "shards", 24, 3)
    local = open_source(str(tmp_path / "shards" / "{00000..00002}.tar"))
    base, server = _serve(tmp_path / "shards")
    try:
        specs = {
            "pipe": f"pipe:cat {tmp_path / 'shards'}/{{00000..00002}}.tar",
            "http": f"{base}/{{00000..00002}}.tar",
        }
        assert expand_shards(specs["http"]) == [f"{base}/0000{i}.tar" for i in range(3)]
        assert detect_format(specs["pipe"]) == "tar"
        reference = _take(CaptionStream(local, 4, 8, seed=3), 8)
        for name, spec in specs.items():
            source = open_source(spec)
            batches = _take(CaptionStream(source, 4, 8, seed=3), 8)
            for a, b in zip(reference, batches, strict=True):
                assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["images"], b["images"]), name
            # resume from the position of batch 5: the stream restarts its shard and skips what was read
            resumed = _take(CaptionStream(source, 4, 8, seed=3, start_states=[batches[4]["state"]], start_micro=5), 3)
            for a, b in zip(batches[5:], resumed, strict=True):
                assert torch.equal(a["tokens"], b["tokens"]) and a["state"] == b["state"], name
            assert source.read_errors == 0
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_pipe_command_counts_as_a_read_error(tmp_path):
    source = open_source("pipe:exit 3 {0..1}.tar", data_format="tar")
    assert list(source.epoch(0, 0, 0, 1, 4, shuffle=False)) == []
    assert source.read_errors == 2

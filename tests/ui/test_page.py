"""The served page through gradio_client, as an API user or a second browser tab would reach it."""

from __future__ import annotations

import threading

import pytest

PROMPT = "a red circle on the left, blue background"
PER_SLOT = 5  # image, status, PNG, animation, settings


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def test_generate_streams_frames_before_both_final_images(served):
    url, _ = served
    job = _client(url).submit(PROMPT, api_name="/generate", steps=20)
    final = job.result()
    updates = job.outputs()
    assert len(updates) >= 3  # frames at steps 5 and 10 of each slot stream before the end
    running = [u for u in updates[:-1] if u[1] and "step" in u[1] and "done" not in u[1]]
    assert len(running) >= 2 and all(u[0] for u in running)  # the picture is there while it runs
    left, right = final[:PER_SLOT], final[PER_SLOT:]
    for slot, name in ((left, "mini"), (right, "mini-vanilla")):
        image, status, png, animation, settings = slot
        assert image and png and png.endswith(".png") and animation
        assert status.startswith(f"{name}: done") and "judge reads" in status
        assert settings["model"] == name and settings["config"]["steps"] == 20


@pytest.mark.parametrize("inputs, message", [
    (dict(prompt=""), "Type a prompt first"),
    (dict(prompt="blurry:-1"), "negative weight"),
    (dict(prompt=PROMPT, steps=1000), "Steps 1000 is out of range"),
    (dict(prompt=PROMPT, size=4000), "Size 4000 px is out of range"),
    (dict(prompt=PROMPT, model_b="ViT-B/32"), "not available here"),
])
def test_bad_input_is_a_message_and_the_server_keeps_serving(served, inputs, message):
    from gradio_client.exceptions import AppError

    url, _ = served
    client = _client(url)
    with pytest.raises(AppError, match=message):
        client.predict(**inputs, api_name="/generate")
    after = client.predict(PROMPT, api_name="/generate", steps=5)
    assert after[1].startswith("mini: done")


def test_two_requests_at_once_both_complete_one_after_the_other(served):
    url, _ = served
    results, errors = {}, []

    def ask(key: str, seed: int) -> None:
        try:
            job = _client(url).submit(PROMPT, api_name="/generate", steps=10, seed=seed)
            results[key] = (job.result(), job.outputs())
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=ask, args=(k, s)) for k, s in (("first", 1), ("second", 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and set(results) == {"first", "second"}
    for final, _ in results.values():
        assert final[1].startswith("mini: done") and final[PER_SLOT + 1].startswith("mini-vanilla: done")
    seeds = {final[4]["seeds"][0] for final, _ in results.values()}
    assert seeds == {1, 2}


def test_the_clipdraw_tab_draws_both_models(served):
    url, _ = served
    job = _client(url).submit("a red circle on the left, blue background", api_name="/clipdraw", strokes=8, steps=10)
    final = job.result()
    assert len(job.outputs()) >= 2
    for slot, name in ((final[:PER_SLOT], "mini"), (final[PER_SLOT:], "mini-vanilla")):
        image, status, png, files, settings = slot
        assert image and png.endswith(".png") and status.startswith(f"{name}: done; 8 strokes")
        assert any(str(f).endswith(".svg") for f in files) and settings["app"] == "clipdraw"


def test_the_clipstyler_tab_styles_an_uploaded_photo_with_both_models(served, tmp_path):
    from gradio_client import handle_file

    from clipag_plugin.mini import world

    scene = world.render_clean([world.caption_index(0, 0, 0, 2)], seed=0)[0]
    from torchvision.transforms.functional import to_pil_image

    to_pil_image(scene).save(tmp_path / "scene.png")
    client = _client(served[0])
    job = client.submit("green background", handle_file(str(tmp_path / "scene.png")), api_name="/clipstyler",
                        steps=10)
    final = job.result()
    assert len(job.outputs()) >= 2  # a frame at step 5 before the end
    for slot, name in ((final[:PER_SLOT], "mini"), (final[PER_SLOT:], "mini-vanilla")):
        image, status, png, files, settings = slot
        assert image and png.endswith(".png") and status.startswith(f"{name}: done; 64 px")
        assert settings["app"] == "clipstyler" and settings["content"] == "scene.png"
    (tmp_path / "notes.png").write_text("not a picture")
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="not an image this server can read"):
        client.predict("green background", handle_file(str(tmp_path / "notes.png")), api_name="/clipstyler")
    assert client.predict(PROMPT, api_name="/generate", steps=5)[1].startswith("mini: done")


def test_the_vqgan_tab_says_what_is_missing(served):
    _, app = served
    texts = [c.get("props", {}).get("value") or "" for c in app.config["components"]]
    missing = [t for t in texts if "Not available here" in t]
    assert len(missing) == 1
    assert "clipag-plugin[vqgan]" in missing[0] or "python -m clipag_plugin.vqgan download" in missing[0]


def test_building_the_page_writes_nothing_into_the_package(served):
    from pathlib import Path

    import clipag_plugin.ui

    assert not list(Path(clipag_plugin.ui.__file__).parent.glob("*.pyi"))  # Gradio writes stubs for subclasses

"""The CLIPStyler tab's logic: two models style one photo in turn, uploads checked before decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clipag_plugin.ui.slots import Caps, UiInputError
from clipag_plugin.ui.styling import StyleRequest, check_upload, style_side_by_side

STYLE = "green background"


@pytest.fixture
def photo(tmp_path):
    from clipag_plugin.mini import world

    scene = world.render_clean([world.caption_index(0, 0, 0, 2)], seed=0)[0]  # red circle, left, blue
    path = tmp_path / "scene.png"
    Image.fromarray((scene.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


def test_two_models_style_one_photo_and_leave_png_gif_json(tmp_path, photo):
    requests = [StyleRequest("mini", steps=6), StyleRequest("mini-vanilla", steps=6, level="c")]
    rounds, views = [], []
    for views in style_side_by_side(STYLE, str(photo), requests, every=3, out_dir=tmp_path / "out", device="cpu"):
        rounds.append([(v.status, v.image) for v in views])  # the views change in place: keep each round
    assert len(rounds) == 3  # frames at 3 and 6, then the finished images
    assert all(status.split(": ")[1].startswith("step 3/6") and image is not None for status, image in rounds[0])
    for view, name, level in zip(views, ("mini", "mini-vanilla"), ("a", "c"), strict=True):
        assert view.done and view.status.startswith(f"{name}: done; 64 px") and "judge reads" in view.status
        assert Image.open(tmp_path / "out" / f"{name}.png").size == (64, 64)
        assert Image.open(tmp_path / "out" / f"{name}.gif").n_frames >= 2
        settings = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert settings["app"] == "clipstyler" and settings["vgg"] == "RANDOM stand-in"
        assert settings["config"]["steps"] == 6 and settings["config"]["tricks"]["patch_loss"] is (level != "c")


def test_stop_keeps_the_image_so_far(tmp_path, photo):
    import threading

    stop = threading.Event()
    stream = style_side_by_side(STYLE, str(photo), [StyleRequest("mini", steps=40)], every=2, out_dir=tmp_path,
                                device="cpu", stop=stop)
    first = next(stream)
    assert not first[0].done
    stop.set()
    final = list(stream)[-1][0]
    assert final.done and final.status.startswith("mini: stopped at step 2") and final.settings["stopped_at_step"] == 2


def test_uploads_are_checked_before_they_are_decoded(tmp_path, photo):
    assert check_upload(str(photo), Caps()) == photo
    with pytest.raises(UiInputError, match="Upload a content photo first"):
        check_upload(None, Caps())
    half = photo.stat().st_size / 2**20 / 2
    with pytest.raises(UiInputError, match=r"this server takes at most .* MB \(clipag ui --max-upload-mb\)"):
        check_upload(str(photo), Caps(max_upload_mb=half))
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000)).save(big)
    with pytest.raises(UiInputError, match="3000x2000 px .* at most 5 megapixels"):
        check_upload(str(big), Caps(max_upload_pixels=5_000_000))
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(UiInputError, match="not an image this server can read"):
        check_upload(str(tmp_path / "notes.png"), Caps())
    with pytest.raises(UiInputError, match="did not arrive"):
        check_upload(str(tmp_path / "gone.png"), Caps())


@pytest.mark.parametrize("request_, style, match", [
    (StyleRequest("mini", steps=999), STYLE, "Steps 999 is out of range"),
    (StyleRequest("mini", size=4000), STYLE, "Size 4000 px is out of range"),
    (StyleRequest("mini", level="z"), STYLE, "Level 'z' is unknown"),
    (StyleRequest("mini"), "fire:1 | water:-0.5", "one style text"),
    (StyleRequest("mini"), "  ", "Type a prompt first"),
    (StyleRequest("ViT-B/32"), STYLE, "not available here"),
])
def test_bad_requests_are_sentences(tmp_path, photo, request_, style, match):
    with pytest.raises(UiInputError, match=match):
        next(style_side_by_side(style, str(photo), [request_], caps=Caps(max_steps=300), out_dir=tmp_path,
                                choices=["mini", "mini-vanilla"]))


def test_a_full_size_preset_without_vgg19_says_how_to_fetch_it(tmp_path, photo, offline_hub):
    with pytest.raises(UiInputError, match="VGG19.*python -m clipag_plugin.vgg"):
        next(style_side_by_side("oil painting", str(photo), [StyleRequest("ViT-B/32", steps=2)], out_dir=tmp_path,
                                device="cpu", choices=["ViT-B/32"]))

"""Export -> load round trips (clipag.load and open_clip local-dir), model card, mocked Hub upload."""

from __future__ import annotations

import json

import pytest
import torch

import clipag
from clipag_plugin.train.export import export_open_clip, model_card, model_config_of, push_to_hub


def _same_outputs(a, b, size):
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    t = clipag.tokenize(["a red square", "a blue dot"])
    with torch.no_grad():
        return torch.allclose(a.encode_pixels(x), b.encode_pixels(x)) and torch.equal(a.encode_text(t), b.encode_text(t))


def test_export_roundtrip_clipag_and_open_clip(tiny_clip, tmp_path):
    import open_clip

    model, _ = tiny_clip
    with torch.no_grad():
        model.visual.conv1.weight.add_(0.01)  # "fine-tuned"
    folder = export_open_clip(model, tmp_path / "export", recipe={"eps": 0.2, "steps": 3}, metrics={"loss": 1.5})
    config = json.loads((folder / "open_clip_config.json").read_text())
    assert config["model_cfg"]["vision_cfg"]["image_size"] == 32
    assert config["preprocess_cfg"]["mean"] == pytest.approx(model.image_mean.flatten().tolist())
    loaded, preprocess = clipag.load(str(folder), device="cpu")
    a, b = model.inner.state_dict(), loaded.inner.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _same_outputs(model, loaded, 32)
    oc = open_clip.create_model(f"local-dir:{folder}", pretrained=None)
    assert all(torch.equal(v, a[k]) for k, v in oc.state_dict().items() if k in a)
    card = (folder / "README.md").read_text()
    assert "library_name: open_clip" in card and "eps: `0.2`" in card and "| loss | 1.5 |" in card


def test_export_cnn_tower_and_missing_config(tiny_rn_clip, tmp_path):
    model, _ = tiny_rn_clip
    cfg, _ = model_config_of(model)  # found through the folder the model was loaded from
    assert cfg["vision_cfg"]["layers"] == [1, 1, 1, 1]
    folder = export_open_clip(model, tmp_path / "rn")
    loaded, _ = clipag.load(str(folder), device="cpu")
    assert _same_outputs(model, loaded, 64)
    model.name = ""  # an in-memory CNN model: nothing to infer its config from
    with pytest.raises(ValueError, match="model_cfg"):
        export_open_clip(model, tmp_path / "rn2")


def test_push_to_hub_uses_hfapi(tmp_path):
    calls = []

    class FakeApi:
        def create_repo(self, **kw):
            calls.append(("create", kw))
            return f"https://huggingface.co/{kw['repo_id']}"

        def upload_folder(self, **kw):
            calls.append(("upload", kw))

    assert push_to_hub(tmp_path, "me/robust", api=FakeApi()) == "https://huggingface.co/me/robust"
    assert calls[0][1]["exist_ok"] and calls[1][1]["folder_path"] == str(tmp_path)
    with pytest.raises(ValueError, match="org/name"):
        push_to_hub(tmp_path, "norepo", api=FakeApi())
    assert "in-memory" in model_card("", {})

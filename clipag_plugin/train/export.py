"""Export a fine-tuned model in open_clip's Hub layout, and optionally upload it.

The folder holds ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``),
``open_clip_model.safetensors`` and a ``README.md`` model card; ``clipag.load(folder)``,
``open_clip.create_model("local-dir:folder")`` and, once uploaded, ``hf-hub:org/repo`` read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch

from ..model import ClipagModel

__all__ = ["model_config_of", "export_open_clip", "model_card", "push_to_hub"]

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"


def model_config_of(model: ClipagModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_cfg, preprocess_cfg)`` of a loaded model, from where ``model.name`` points, else its weights.

    Raises ValueError when neither works (pass ``model_cfg`` to :func:`export_open_clip` then).
    """
    from ..loading import infer_vit_config, resolve_files

    model_cfg: Optional[dict] = None
    preprocess_cfg: dict = {}
    if model.name:
        try:
            files = resolve_files(model.name)
            preprocess_cfg = dict(files.preprocess_cfg)
            if isinstance(files.architecture, dict):
                model_cfg = dict(files.architecture)
            elif files.architecture:
                import open_clip

                model_cfg = open_clip.get_model_config(files.architecture)
        except Exception:  # offline, renamed, in-memory model: fall back to the weights' shapes
            model_cfg = None
    if model_cfg is None:
        try:
            model_cfg = infer_vit_config({k: v for k, v in model.inner.state_dict().items()})
        except ValueError as err:
            raise ValueError(
                f"cannot tell the open_clip config of model {model.name!r} (not a ViT, and its name does not "
                f"resolve); pass model_cfg=... (the dict the open_clip CLIP was built from)"
            ) from err
    return json.loads(json.dumps(model_cfg)), preprocess_cfg


def model_card(base_model: str, recipe: dict[str, Any], metrics: Optional[dict[str, Any]] = None,
               data: Optional[str] = None) -> str:
    """A Hugging Face model card (front matter + recipe + metrics) for an exported model."""
    lines = [
        "---",
        "library_name: open_clip",
        "tags:",
        "- clip",
        "- clipag",
        "- adversarial-robustness",
        "license: mit",
        "---",
        "",
        "# Adversarially fine-tuned CLIP (CLIPAG recipe)",
        "",
        f"Image tower of `{base_model or 'unknown'}` fine-tuned with PGD adversarial training on the CLIP "
        "contrastive loss (Ganz & Elad, *CLIPAG*, WACV 2024); the text tower is unchanged. Made with "
        "[clipag-plugin](https://github.com/) `clipag finetune`.",
        "",
        "```python",
        "import clipag",
        "model, preprocess = clipag.load('hf-hub:<this repo>')",
        "# or: open_clip.create_model_and_transforms('hf-hub:<this repo>')",
        "```",
        "",
        "## Recipe",
        "",
        f"- data: `{data or recipe.get('data') or 'in-memory'}`",
    ]
    keys = ["norm", "eps", "eps_ramp_steps", "eps_ramp_start", "pgd_steps", "step_size", "random_start", "attack_loss",
            "objective", "class_prompts", "clean_weight", "fare_weight",
            "steps", "batch_size", "accum_steps", "lr", "weight_decay", "warmup_steps", "grad_clip", "precision", "seed"]
    lines += [f"- {k}: `{recipe[k]}`" for k in keys if k in recipe]
    if metrics:
        lines += ["", "## Final training metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


def export_open_clip(
    model: ClipagModel,
    folder: str | os.PathLike,
    model_cfg: Optional[dict] = None,
    preprocess_cfg: Optional[dict] = None,
    recipe: Optional[dict] = None,
    metrics: Optional[dict] = None,
    base_model: Optional[str] = None,
) -> Path:
    """Write ``model`` (all towers, fp32) in open_clip Hub layout into ``folder``; return the folder.

    Args:
        model: the model to write.
        folder: output folder (created).
        model_cfg: open_clip ``model_cfg`` (default: found from ``model.name``).
        preprocess_cfg: open_clip ``preprocess_cfg`` (default: the model's mean, std and size).
        recipe: training settings recorded in the model card.
        metrics: evaluation figures recorded in the model card.
        base_model: the model it was fine-tuned from, for the model card.

    Returns:
        ``folder``, holding ``open_clip_config.json``, ``open_clip_model.safetensors`` and ``README.md``.
    """
    from ..checkpoint import save_state_dict

    folder = Path(folder)
    found_cfg, found_pre = (model_cfg, {}) if model_cfg is not None else model_config_of(model)
    pre = dict(found_pre)
    pre.update({"mean": [float(v) for v in model.image_mean.flatten()], "std": [float(v) for v in model.image_std.flatten()]})
    pre.update(preprocess_cfg or {})
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
             for k, v in model.inner.state_dict().items()}
    save_state_dict(state, folder / WEIGHTS_NAME)
    config = {"model_cfg": found_cfg, "preprocess_cfg": pre}
    tmp = folder / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, folder / CONFIG_NAME)
    (folder / "README.md").write_text(model_card(base_model or model.name, recipe or {}, metrics))
    return folder


def push_to_hub(folder: str | os.PathLike, repo_id: str, private: bool = False, token: Optional[str] = None,
                api: Any = None, commit_message: str = "Upload CLIPAG fine-tuned model") -> str:
    """Create ``repo_id`` (if needed) and upload ``folder``; return the repo URL."""
    if repo_id.count("/") != 1:
        raise ValueError(f"repo {repo_id!r}: expected 'org/name'")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    url = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=commit_message)
    return str(url)

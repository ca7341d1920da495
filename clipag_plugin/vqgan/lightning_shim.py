"""Make ``taming-transformers-rom1504`` importable with any PyTorch Lightning version.

``taming.main`` (imported by ``taming.models.vqgan``) does
``from pytorch_lightning.utilities.distributed import rank_zero_only``; Lightning 2.x moved that
function to ``pytorch_lightning.utilities.rank_zero`` and deleted the old module. Rather than pin
Lightning 1.x, a one-attribute stand-in module is registered under the old name before taming
is imported. Nothing else about Lightning is touched.
"""

from __future__ import annotations

import importlib
import sys
import types

__all__ = ["install_lightning_shim", "import_taming_vqgan", "STANDIN_NAME"]

STANDIN_NAME = "pytorch_lightning.utilities.distributed"


def install_lightning_shim() -> bool:
    """Register the stand-in when Lightning lacks the old module; return whether one was added.

    Idempotent. Raises ``ImportError`` with the install command when Lightning is missing.

    Returns:
        True when the stand-in was registered by this call.
    """
    if STANDIN_NAME in sys.modules:
        return False
    try:
        importlib.import_module(STANDIN_NAME)  # Lightning 1.x still has it
        return False
    except ModuleNotFoundError as err:
        if err.name not in (STANDIN_NAME, "pytorch_lightning.utilities"):
            if err.name == "pytorch_lightning":
                raise ImportError(
                    "VQGAN support needs PyTorch Lightning (taming-transformers' models subclass "
                    "LightningModule): pip install 'clipag-plugin[vqgan]'"
                ) from err
            raise
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    standin = types.ModuleType(
        STANDIN_NAME, "clipag stand-in: the Lightning 1.x module path taming-transformers imports"
    )
    standin.rank_zero_only = rank_zero_only
    standin.__clipag_standin__ = True
    sys.modules[STANDIN_NAME] = standin
    return True


def import_taming_vqgan() -> types.ModuleType:
    """``taming.models.vqgan``, imported after the stand-in is in place.

    Returns:
        The module.
    """
    try:
        install_lightning_shim()
        return importlib.import_module("taming.models.vqgan")
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in {"taming", "einops", "omegaconf", "requests"}:
            raise ImportError(
                f"VQGAN support needs taming-transformers and its undeclared dependencies (missing "
                f"module {err.name!r}): pip install 'clipag-plugin[vqgan]'"
            ) from err
        raise

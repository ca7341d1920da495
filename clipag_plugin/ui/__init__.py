"""``clipag ui``: a web page where the robust and the plain CLIP paint the same prompt side by side.

Needs the ``[ui]`` extra (Gradio). :func:`build_app` returns the Gradio app, to serve it yourself
(a Hugging Face Space, a notebook); ``clipag ui`` serves it locally. The logic the page runs works
without Gradio: :mod:`.slots` (the Generate tab and what every tab shares), :mod:`.drawing`
(CLIPDraw), :mod:`.styling` (CLIPStyler), :mod:`.latents` (VQGAN+CLIP).
"""

from __future__ import annotations

from .slots import Caps, SlotRequest, SlotView, UiInputError, paint_side_by_side

__all__ = ["build_app", "Caps", "SlotRequest", "SlotView", "UiInputError", "paint_side_by_side",
           "MISSING_EXTRA"]

MISSING_EXTRA = ("the web page needs Gradio: pip install 'clipag-plugin[ui]' (in a checkout: "
                 "pip install -e '.[ui]')")


def build_app(**kwargs):
    """The Gradio app (see :func:`clipag_plugin.ui.app.build_app` for the arguments).

    Args:
        kwargs: passed on.

    Returns:
        A ``gradio.Blocks``.
    """
    try:
        import gradio  # noqa: F401
    except ImportError as err:
        raise ImportError(MISSING_EXTRA) from err
    from .app import build_app as build

    return build(**kwargs)

"""A matplotlib backend for headless notebook runs: figures draw off-screen (Agg) and ``plt.show()``
saves them through the running notebook's display sink (``MPLBACKEND=module://...``, as Jupyter's
inline backend does for a page)."""

from __future__ import annotations

from matplotlib._pylab_helpers import Gcf
from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

__all__ = ["FigureCanvas", "FigureManager", "show"]

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase


def show(*args, **kwargs) -> None:
    """Save every open figure as the next display file, then close them."""
    from ._display import current_sink

    sink = current_sink()
    for manager in Gcf.get_all_fig_managers():
        if sink is not None:
            sink.figure(manager.canvas.figure)
    Gcf.destroy_all()

"""``import clipag as clip``: the public name of clipag-plugin (see ``clipag_plugin``)."""

from clipag_plugin import __all__ as __all__  # noqa: F401
from clipag_plugin import __version__ as __version__
from clipag_plugin import available_models as available_models
from clipag_plugin import load as load
from clipag_plugin import tokenize as tokenize


def __getattr__(name: str):
    import clipag_plugin

    return getattr(clipag_plugin, name)

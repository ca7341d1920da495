"""Adapters that make existing CLIP-guided apps run on clipag (installed as ``clipag_plugin.adapters``).

Each app module offers ``patch(...)``, usable as a context manager, which swaps OpenAI's ``clip``
module for clipag and switches the app's augmentation tricks off; everything is restored on exit.
"""

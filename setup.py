"""Package discovery that pyproject.toml alone cannot express.

The repository keeps the app adapters in a top-level ``adapters/`` folder (the design card's
layout), but the wheel must not install a bare ``adapters`` package (a different PyPI project
owns that name). They are installed as ``clipag_plugin.adapters`` instead.
"""

from setuptools import find_packages, setup

packages = find_packages(include=["clipag_plugin", "clipag_plugin.*", "clipag"])
packages += ["clipag_plugin.adapters"] + [
    "clipag_plugin.adapters." + sub for sub in find_packages(where="adapters")
]

setup(packages=packages)

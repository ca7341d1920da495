"""The mini world: a procedural world of captioned shapes and the tiny CLIPs trained on it.

``world`` renders images and captions, ``pretrain`` trains the vanilla CLIP from scratch,
``robust`` fine-tunes it adversarially, ``judge`` scores pictures per attribute, and ``build``
rebuilds every shipped file with one seeded command. Importing this package loads nothing.
"""

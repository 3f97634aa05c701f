"""The ``priors3d`` commands: one function per command, taking one config dataclass.

Thin: each parses nothing (``priors3d.cli`` builds the config with tyro), calls the library and
prints a line. Library modules never import from here.
"""

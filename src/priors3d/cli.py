"""The ``priors3d`` command: ``priors3d GROUP COMMAND [OPTIONS]``.

Thin by design: every command is a library function taking one config dataclass; this module
finds the function, lets tyro build the options from the dataclass, and calls it. Imports are
lazy so that ``priors3d --help`` is instant. Bad input (ValueError, FileNotFoundError) is reported
as one line and exit status 2; set ``PRIORS3D_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import typing

import tyro

# group -> command -> "module:function"; the function takes one config dataclass.
COMMANDS: dict[str, dict[str, str]] = {
    "demo": {"rotation": "priors3d.demo:rotation_demo", "field": "priors3d.demo:field_demo"},
    "data": {"prepare": "priors3d.pointcloud.data:prepare"},
    "pointcloud": {
        "train": "priors3d.pointcloud.train:train",
        "eval": "priors3d.pointcloud.train:evaluate_run",
        "protocols": "priors3d.pointcloud.train:protocols",
    },
    "occupancy": {
        "train": "priors3d.pointcloud.train_occupancy:train",
        "eval": "priors3d.pointcloud.train_occupancy:evaluate_run",
        "protocols": "priors3d.pointcloud.train_occupancy:protocols",
    },
    "field": {
        "generate": "priors3d.fields.scenes.generate:generate",
        "fit": "priors3d.fields.train:fit",
        "render": "priors3d.fields.train:render",
        "shape": "priors3d.shaping.shape:shape",
        "propagate": "priors3d.shaping.shape:propagate",
        "select": "priors3d.shaping.shape:select_command",
        "recolor": "priors3d.shaping.shape:recolor_command",
    },
    "splat": {
        "fit": "priors3d.fields.splat_fit:fit",
        "shape": "priors3d.shaping.infogs:shape",
        "edit": "priors3d.shaping.infogs:edit",
    },
}


def _resolve(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _usage() -> str:
    lines = ["usage: priors3d GROUP COMMAND [OPTIONS]   (COMMAND --help for its options)", ""]
    for group, commands in COMMANDS.items():
        for command, target in commands.items():
            lines.append(f"  priors3d {group} {command:<12} {target}")
    return "\n".join(lines)


def run_command(group: str, command: str, args: list[str]):
    """Parse ``args`` into the command's config dataclass and call the command."""
    if group not in COMMANDS:
        raise SystemExit(f"unknown group {group!r}; expected one of {sorted(COMMANDS)}\n\n{_usage()}")
    if command not in COMMANDS[group]:
        raise SystemExit(
            f"unknown command {group} {command!r}; expected one of {sorted(COMMANDS[group])}\n\n{_usage()}"
        )
    func = _resolve(COMMANDS[group][command])
    (param,) = inspect.signature(func).parameters.values()
    config_type = typing.get_type_hints(func)[param.name]
    config = tyro.cli(config_type, args=args, prog=f"priors3d {group} {command}",
                      description=inspect.getdoc(func))
    return func(config)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return
    group, rest = argv[0], argv[1:]
    commands = COMMANDS.get(group, {})
    if len(commands) == 1 and (not rest or rest[0].startswith("-")):
        rest = [next(iter(commands))] + rest  # a group with one command needs no command name
    if not rest:
        raise SystemExit(f"priors3d {group}: missing command\n\n{_usage()}")
    try:
        run_command(group, rest[0], rest[1:])
    except (ValueError, FileNotFoundError) as error:  # bad input: the message says what was expected
        if os.environ.get("PRIORS3D_DEBUG"):
            raise
        print(f"priors3d {group} {rest[0]}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

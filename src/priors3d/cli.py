"""The ``priors3d`` command: ``priors3d GROUP COMMAND [OPTIONS]``.

Thin by design: every command is a library function taking one config dataclass; this module
finds the function, lets tyro build the options from the dataclass, and calls it. Imports are
lazy so that ``priors3d --help`` is instant. Every config's ``threads`` is applied here. Bad input
(ValueError, FileNotFoundError, a run locked by another writer) is reported as one line and exit
status 2; SIGINT/SIGTERM during training as one line and status 130 (the checkpoint is saved). Set
``PRIORS3D_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import typing

import tyro

from priors3d import use_huge_pages

# group -> command -> "module:function"; the function takes one config dataclass.
COMMANDS: dict[str, dict[str, str]] = {
    "demo": {"rotation": "priors3d.commands.demo:rotation", "field": "priors3d.commands.demo:field"},
    "data": {"prepare": "priors3d.commands.pointcloud:prepare"},
    "pointcloud": {
        "train": "priors3d.commands.pointcloud:train",
        "eval": "priors3d.commands.pointcloud:evaluate",
        "protocols": "priors3d.commands.pointcloud:protocols",
    },
    "occupancy": {
        "train": "priors3d.commands.occupancy:train",
        "eval": "priors3d.commands.occupancy:evaluate",
        "protocols": "priors3d.commands.occupancy:protocols",
    },
    "field": {
        "generate": "priors3d.commands.fit:generate",
        "fit": "priors3d.commands.fit:fit",
        "render": "priors3d.commands.fit:render",
        "shape": "priors3d.commands.shaping:shape",
        "propagate": "priors3d.commands.shaping:propagate",
        "select": "priors3d.commands.shaping:select",
        "recolor": "priors3d.commands.shaping:recolor",
    },
    "splat": {
        "fit": "priors3d.commands.fit:splat_fit",
        "shape": "priors3d.commands.shaping:splat_shape",
        "edit": "priors3d.commands.shaping:splat_edit",
    },
    "view": {"view": "priors3d.commands.view:view"},
    "policy": {
        "demos": "priors3d.commands.policy:demos",
        "train": "priors3d.commands.policy:train",
        "eval": "priors3d.commands.policy:evaluate",
    },
    "efem": {
        "train": "priors3d.commands.efem:train",
        "segment": "priors3d.commands.efem:segment_scene",
        "eval": "priors3d.commands.efem:evaluate",
    },
}


def _resolve(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _name(group: str, command: str) -> str:
    """How a command is typed: ``field fit``; a group with one command is typed alone (``view``)."""
    return group if len(COMMANDS.get(group, {})) == 1 else f"{group} {command}"


def _usage() -> str:
    lines = ["usage: priors3d GROUP COMMAND [OPTIONS]   (COMMAND --help for its options)", ""]
    for group, commands in COMMANDS.items():
        for command, target in commands.items():
            lines.append(f"  priors3d {_name(group, command):<23} {target}")
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
    config = tyro.cli(config_type, args=args, prog=f"priors3d {_name(group, command)}",
                      description=inspect.getdoc(func))
    threads = getattr(config, "threads", None)
    if threads is not None:
        from priors3d.engine import set_threads

        set_threads(threads)
    return func(config)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return
    group, rest = argv[0], argv[1:]
    commands = COMMANDS.get(group, {})
    if len(commands) == 1 and (not rest or rest[0] not in commands):
        rest = [next(iter(commands))] + rest  # a group with one command needs no command name
    if not rest:
        raise SystemExit(f"priors3d {group}: missing command\n\n{_usage()}")
    use_huge_pages()  # before torch makes a tensor
    name = _name(group, rest[0])
    try:
        run_command(group, rest[0], rest[1:])
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a training loop
        print(f"priors3d {name}: interrupted (the last checkpoint, if any, is kept)", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:
        from priors3d.engine import Interrupted
        from priors3d.runs import RunLocked

        if isinstance(error, Interrupted):
            print(f"priors3d {name}: {error}", file=sys.stderr)
            raise SystemExit(130) from None
        # bad input: the message says what was expected
        if not isinstance(error, (ValueError, FileNotFoundError, RunLocked)) or os.environ.get("PRIORS3D_DEBUG"):
            raise
        print(f"priors3d {name}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

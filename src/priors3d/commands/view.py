"""``priors3d view RUN``: the local web viewer (``priors3d.viewer``)."""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from priors3d.engine import CommandConfig
from priors3d.viewer import ViewerServer


@dataclass(kw_only=True)
class ViewConfig(CommandConfig):
    """Options of ``priors3d view``."""

    run: tyro.conf.Positional[Path]
    """A run directory (field fit/shape, splat fit/shape), or a folder holding runs (e.g. ``runs/demo/field``)."""
    host: str = "127.0.0.1"
    """Address to listen on. Anything but a loopback address lets other machines use the viewer (no password)."""
    port: int = 8080
    """Port (0: any free one)."""
    scale: float = 1.0
    """Viewer resolution as a multiple of the scene's (renders and clicks; 1 = the training images' size)."""
    out: Path | None = None
    """Where Save writes PNGs (default ``RUN/viewer``)."""


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def view(cfg: ViewConfig) -> None:
    """Serve the viewer for RUN until Ctrl-C: orbit, click to select / recolour / move / remove / label, undo, save."""
    server = ViewerServer(cfg.run, cfg.host, cfg.port, cfg.scale, cfg.out)
    if not _loopback(cfg.host):
        print(f"warning: listening on {cfg.host}: anyone who can reach this machine can use the viewer and read "
              f"the runs under {cfg.run} (no password); the default --host 127.0.0.1 keeps it local", file=sys.stderr)
    print(f"priors3d viewer: {len(server.runs)} run(s) under {cfg.run}; open {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("viewer stopped")
    finally:
        server.server_close()

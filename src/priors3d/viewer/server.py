"""The viewer's HTTP server: the page (``static/index.html``) and a small JSON API over ``RunViewer``s.

Standard library only (``http.server``): the page draws PNG renders in an ``<img>``, so it needs no WebGL and a
headless browser screenshots exactly what a person sees. Routes (``run`` names a run of ``ViewerServer.runs``):

- ``GET /``: the page; ``GET /api/runs``: the runs; ``GET /api/run?run=``: one run's views, modes and resolution.
- ``GET /api/render?run=&view=&yaw=&pitch=&dolly=&scale=&threshold=``: PNG of that camera (``scale`` < 1: a preview).
- ``POST /api/click`` ``{run, view, yaw, pitch, dolly, x, y, mode, color, threshold, offset}``: runs the mode at that
  pixel; answers ``{message, image}`` (the new render as a PNG data URL) and ``ms`` (server time).
- ``POST /api/undo``, ``/api/reset`` ``{run}``; ``POST /api/save`` ``{run, view, ...}``: writes the view's PNG.

Bad input (unknown run, a click outside the image, a shaping mode on an unshaped run, a bad number) answers 400
with ``{"error": message}``, which the page shows; anything else 500 with the error named. The server goes on.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from priors3d.runs import RunDir, open_run
from priors3d.viewer.session import Camera, FieldViewer, RunViewer, SplatViewer
from priors3d.viz import save_png

KINDS = ("field fit", "field shape", "splat fit", "splat shape")
PAGE = Path(__file__).with_name("static") / "index.html"


def find_runs(root: str | Path) -> dict[str, Path]:
    """``{name: path}`` of the runs to view: ``root`` itself when it is a run, else the runs of ``KINDS`` in the
    folders below it (names relative to ``root``, up to three levels deep)."""
    root = Path(root)
    if (root / "config.json").is_file():
        open_run(root, KINDS, "view")  # a run of another kind: a clear error
        return {root.resolve().name: root}
    if not root.is_dir():
        raise FileNotFoundError(f"{root} not found: 'view' expects a run directory written by {', '.join(KINDS)}, "
                                f"or a folder holding such runs")
    found = {}
    for config in sorted(p for depth in ("*/", "*/*/", "*/*/*/") for p in root.glob(depth + "config.json")):
        try:
            if RunDir(config.parent, create=False).kind() in KINDS:
                found[config.parent.relative_to(root).as_posix()] = config.parent
        except ValueError:  # an unreadable config.json: not a run to view
            continue
    if not found:
        raise FileNotFoundError(f"{root} holds no run to view: expected run directories (config.json) written by "
                                f"{', '.join(KINDS)}")
    return found


class ViewerServer(ThreadingHTTPServer):
    """Serve the viewer for the runs under ``root`` (``find_runs``) at ``host:port`` (port 0: a free one).

    Runs load on first use. ``scale`` multiplies the scenes' resolution (the viewer's resolution); Save writes
    PNGs to ``out`` (default ``root/viewer``).
    """

    daemon_threads = True

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 8080, scale: float = 1.0,
                 out: str | Path | None = None):
        if not 0 < scale <= 8:
            raise ValueError(f"scale must be in (0, 8] (a multiple of the scenes' resolution), got {scale}")
        self.root, self.runs = Path(root), find_runs(root)
        self.scale, self.out = scale, Path(out) if out is not None else Path(root) / "viewer"
        self.viewers: dict[str, RunViewer] = {}
        self.scenes: dict[str, object] = {}
        self.loading = threading.Lock()
        self.saved = 0
        try:
            super().__init__((host, port), _Handler)
        except OSError as error:
            raise ValueError(f"cannot listen on {host}:{port}: {error.strerror or error}; choose another --port "
                             f"(0: any free one) or --host") from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/"

    def viewer(self, name: str) -> RunViewer:
        """The loaded run ``name``; a ValueError naming the runs for an unknown one."""
        if name not in self.runs:
            raise ValueError(f"unknown run {name!r}; this viewer serves {', '.join(map(repr, self.runs))}")
        with self.loading:
            if name not in self.viewers:
                path = self.runs[name]
                kind = RunDir(path, create=False).kind()
                self.viewers[name] = (FieldViewer(name, path, kind, self.scale, scenes=self.scenes)
                                      if kind.startswith("field") else SplatViewer(name, path, kind, self.scale))
            return self.viewers[name]

    def runs_info(self) -> list[dict]:
        kinds = {name: RunDir(path, create=False).kind() for name, path in self.runs.items()}
        return [{"name": name, "kind": kind, "shaped": kind.endswith("shape")} for name, kind in kinds.items()]

    def save(self, viewer: RunViewer, camera: Camera, threshold: float) -> Path:
        """Write ``camera``'s picture (edits and overlay as shown) to ``out``; returns its path."""
        image = viewer.picture(camera, 1.0, threshold)
        with self.loading:
            self.saved += 1
            name = f"{viewer.name.replace('/', '-')}-{viewer.view_names[camera.view][0]}-{self.saved:03d}.png"
        return save_png(self.out / name, image)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _number(values: dict, key: str, default: float | None = None) -> float:
    value = values.get(key, default)
    if isinstance(value, list):  # a query string's values
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return number


def _camera(values: dict) -> Camera:
    view = _number(values, "view", 0)
    if view != int(view):
        raise ValueError(f"view must be a whole number, got {view}")
    return Camera(int(view), *(_number(values, key, 0.0) for key in ("yaw", "pitch", "dolly")))


def _name(values: dict) -> str:
    name = values.get("run")
    return name[0] if isinstance(name, list) else str(name)


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer

    def log_message(self, format: str, *args) -> None:  # quiet: the page shows what happens
        pass

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route) -> None:
        try:
            status, body, content_type = route()
        except (ValueError, FileNotFoundError) as error:
            status, body, content_type = 400, json.dumps({"error": str(error)}).encode(), "application/json"
        except Exception as error:  # noqa: BLE001 - the server goes on; the page shows the error
            traceback.print_exc()
            status, content_type = 500, "application/json"
            body = json.dumps({"error": f"internal error ({type(error).__name__}): {error}"}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the page moved on
            pass

    def _get(self) -> tuple[int, bytes, str]:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path in ("/", "/index.html"):
            return 200, PAGE.read_bytes(), "text/html; charset=utf-8"
        if url.path == "/api/runs":
            return _json({"runs": self.server.runs_info()})
        if url.path == "/api/run":
            return _json(self.server.viewer(_name(query)).info())
        if url.path == "/api/render":
            viewer = self.server.viewer(_name(query))
            image = viewer.picture(_camera(query), _number(query, "scale", 1.0), _number(query, "threshold", 0.9))
            return 200, _png(image), "image/png"
        return 404, json.dumps({"error": f"no such page: {url.path}"}).encode(), "application/json"

    def _post(self) -> tuple[int, bytes, str]:
        path = urlsplit(self.path).path
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except json.JSONDecodeError as error:
            raise ValueError(f"the request body must be JSON: {error}") from None
        if not isinstance(body, dict):
            raise ValueError(f"the request body must be a JSON object, got {type(body).__name__}")
        viewer = self.server.viewer(_name(body))
        if path == "/api/click":
            start = time.perf_counter()
            camera, threshold = _camera(body), _number(body, "threshold", 0.9)
            x, y = (_number(body, key) for key in ("x", "y"))
            message = viewer.click(camera, int(x), int(y), str(body.get("mode")), body.get("color", (0.1, 0.8, 0.2)),
                                   threshold, body.get("offset", (0.0, 0.0, 0.3)))
            image = base64.b64encode(_png(viewer.picture(camera, 1.0, threshold))).decode()
            return _json({"message": message, "image": f"data:image/png;base64,{image}",
                          "ms": round(1000 * (time.perf_counter() - start))})
        if path == "/api/undo":
            return _json({"message": viewer.undo()})
        if path == "/api/reset":
            return _json({"message": viewer.reset()})
        if path == "/api/save":
            saved = self.server.save(viewer, _camera(body), _number(body, "threshold", 0.9))
            return _json({"message": f"saved {saved}", "path": str(saved)})
        return 404, json.dumps({"error": f"no such action: {path}"}).encode(), "application/json"


def _json(value: dict) -> tuple[int, bytes, str]:
    return 200, json.dumps(value).encode(), "application/json"

"""A local web viewer for fitted and shaped runs (NeRF and Gaussians): orbit the camera, click a pixel to select,
recolour, move, remove or label what resonates with it (the library's own edits), undo, save PNGs.

``ViewerServer(root).serve_forever()`` serves the page and its JSON API (standard library only, see ``server``);
``RunViewer`` and its ``FieldViewer`` / ``SplatViewer`` hold one run each (see ``session``).
"""

from .server import ViewerServer, find_runs
from .session import MODES, Camera, FieldViewer, RunViewer, SplatViewer

__all__ = ["MODES", "Camera", "FieldViewer", "RunViewer", "SplatViewer", "ViewerServer", "find_runs"]

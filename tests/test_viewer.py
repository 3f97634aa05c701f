"""The viewer (``priors3d.viewer``): its library side on tiny runs, its HTTP API, the ``view`` command, and the page
driven end to end in headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright), judged from screenshots.

``PRIORS3D_VIEWER_SIZE`` (default 24) sets the room's resolution for the browser test; with 64 (the default
room's) its printed click -> result times are the ones in docs/benchmarks.md (run it with ``-s``).
"""

import io
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from priors3d import cli
from priors3d.commands.view import ViewConfig, view
from priors3d.fields.fit import FitConfig, fit_nerf, load_field
from priors3d.fields.formats import load_scene, write_nerfstudio
from priors3d.fields.nerf import NeRFConfig
from priors3d.fields.scenes import RoomConfig, generate_room
from priors3d.fields.splat_fit import SplatFitConfig, fit_splats, load_splats
from priors3d.runs import RunDir
from priors3d.shaping.clicks import Click, object_clicks
from priors3d.shaping.edit import select
from priors3d.shaping.infogs import SplatShapeConfig, shape_splats
from priors3d.shaping.propagate import view_jacobians
from priors3d.shaping.shape import ShapeConfig, shape_field
from priors3d.shaping.sources import SegmentConfig
from priors3d.viewer import Camera, FieldViewer, SplatViewer, ViewerServer, find_runs, session

SIZE = int(os.environ.get("PRIORS3D_VIEWER_SIZE", "24"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STRUCTURE = {"floor", "wall", "ceiling"}


def _room(tmp: Path, size: int):
    """A small room written to disk (the viewer reads scenes by path) and read back as the fits see it."""
    folder = tmp / "room"
    write_nerfstudio(generate_room(RoomConfig(width=size, height=size, n_views=12, test_every=4, light_samples=1,
                                              overview_fov_deg=0.0)), folder)
    return folder, load_scene(folder)


@pytest.fixture(scope="module")
def splat_runs(tmp_path_factory):
    """``runs/fit`` (splat fit) and ``runs/shape`` (splat shape) of a small room; returns (runs folder, scene)."""
    tmp = tmp_path_factory.mktemp("splat")
    folder, scene = _room(tmp, SIZE)
    fit_splats(scene, SplatFitConfig(scene=folder, out=tmp / "runs" / "fit", iterations=200, init_stride=2,
                                     init_view_step=2, tile=8, eval_every=0, picture_views=0, progress=False))
    field, setup = load_splats(tmp / "runs" / "fit")
    # Quick shaping (~6 s): no photometric term, 2 neighbours, a weak norm penalty and a high learning rate; 3D
    # segments on a coarser grid than the default 64 cells: 24-pixel views sample the room too sparsely for 6 cm
    # voxels to touch.
    shape_splats(field, setup, scene, SplatShapeConfig(run=tmp / "runs" / "fit", out=tmp / "runs" / "shape",
                                                       iterations=200, fraction=0.1, lr=0.03, photo=0.0,
                                                       neighbours=2, gamma=0.1, progress=False,
                                                       segments=SegmentConfig(voxels=32)))
    return tmp / "runs", scene


@pytest.fixture(scope="module")
def field_runs(tmp_path_factory):
    """``fit`` (field fit) and ``shape`` (field shape) of a 16x16 room, a few steps; returns (runs, scene)."""
    tmp = tmp_path_factory.mktemp("field")
    folder, scene = _room(tmp, 16)
    fit_nerf(scene, FitConfig(scene=folder, out=tmp / "runs" / "fit", iterations=40, batch_rays=64, n_samples=8,
                              n_proposal=8, density_grid_every=2, eval_every=0, picture_views=0, progress=False,
                              field=NeRFConfig(resolutions=(8, 16), features=2, hidden=16, density_grid=8)))
    shape_field(*load_field(tmp / "runs" / "fit"), scene, ShapeConfig(  # whole field: 3 steps leave a new shaping
        run=tmp / "runs" / "fit", out=tmp / "runs" / "shape", iterations=3, batch_rays=32, jacobian_rays=16,
        head=False, progress=False))  # head's Jacobians nearly parallel, and a click would select everything
    return tmp / "runs", scene


def _object(scene):
    """The view (train views first), the click and the true mask ``[H, W]`` of the object deepest inside its
    outline among the training views' non-structural instances."""
    semantic, instance = scene.train.semantic, scene.train.instance
    structural = {int(i) for i in instance.unique() if i >= 0
                  and scene.class_names[int(torch.mode(semantic[instance == i]).values)] in STRUCTURE}
    labels = torch.where(torch.isin(instance, torch.tensor(sorted(structural))), -1, instance)
    clicks = object_clicks(labels)
    depth = [ndimage.distance_transform_edt(np.pad(labels[c.view].numpy() == c.label, 1)).max() for c in clicks]
    click = clicks[int(np.argmax(depth))]
    return click, (labels[click.view] == click.label).numpy()


# --- the library side --------------------------------------------------------------------------------------------


def test_cameras_orbit_about_a_pivot(field_runs):
    runs, _ = field_runs
    viewer = FieldViewer("fit", runs / "fit", "field fit")
    for v in (0, len(viewer.c2w) - 1):  # no orbit: the dataset's camera
        assert torch.allclose(viewer.pose(Camera(v)), viewer.c2w[v], atol=1e-6)
    assert torch.allclose(viewer.pose(Camera(1, yaw=360.0)), viewer.c2w[1], atol=1e-5)
    turned, eye = viewer.pose(Camera(1, yaw=30.0, pitch=-20.0)), viewer.c2w[1, :3, 3]
    assert not torch.allclose(turned[:3, 3], eye, atol=1e-3)
    assert torch.allclose(turned[:3, :3] @ turned[:3, :3].T, torch.eye(3), atol=1e-5)  # still a rotation
    moved = viewer.pose(Camera(1, dolly=0.5))
    assert torch.allclose(moved[:3, 3] - eye, -0.5 * viewer.c2w[1, :3, 2], atol=1e-5)  # forward is -z
    views = viewer.camera_views(Camera(2), 0.5)
    assert views.hw == (8, 8) and torch.allclose(views.intrinsics[0], viewer.intrinsics[2] / 2)
    with pytest.raises(ValueError, match="view must be in 0..11"):
        viewer.pose(Camera(12))


def test_field_clicks_run_the_library_edits(field_runs, monkeypatch):
    runs, scene = field_runs
    viewer = FieldViewer("shape", runs / "shape", "field shape")
    camera, click = Camera(0), Click(0, 8, 9)
    before = viewer.picture(camera)  # a still render: what a click there needs is computed in the background
    assert before.shape == (16, 16, 3) and before.dtype == np.uint8
    for _ in range(200):
        if not viewer._prefetching:
            break
        time.sleep(0.05)
    assert sum(len(p) for p in viewer._jacobians[(camera, viewer.edit[1])]) == 16 * 16
    assert "select" in viewer.click(camera, 8, 9, "select", threshold=0.8)
    model, setup = load_field(runs / "shape")
    expected, responses = select(model, setup, scene.train, scene.train.subset([0]), click, 0.8)
    drawn = viewer.draw_overlay(viewer.edit, viewer.overlay, camera, viewer.camera_views(camera), 0.8)[0]
    assert torch.equal(drawn > 0, expected[0])  # the library's select, from the cached Jacobians
    assert expected[0].any() and not expected[0].all()
    library = view_jacobians(model, setup, scene.train.subset([0]))[0]  # [H, W, P]
    assert torch.allclose(viewer.jacobians(camera), library, atol=1e-6)
    viewer.click(camera, 3, 3, "label")
    viewer.click(camera, 12, 12, "label")
    assert viewer.overlay[0] == "label" and viewer.overlay[1].shape[0] == 2
    assert "recolour" in viewer.click(camera, 8, 9, "recolor", color=(1.0, 0.0, 0.0))
    after = viewer.picture(camera)
    assert viewer.overlay is None and np.abs(after.astype(int) - before.astype(int)).max() > 0
    assert viewer.undo().startswith("undone") and viewer.overlay[0] == "label"
    viewer.reset()
    assert np.array_equal(viewer.picture(camera), before) and viewer.undo() == "nothing to undo"
    with pytest.raises(ValueError, match="move needs Gaussians"):
        viewer.click(camera, 8, 9, "move")
    with pytest.raises(ValueError, match=r"outside the 16x16 image"):
        viewer.click(camera, 16, 3, "select")
    with pytest.raises(ValueError, match="not shaped"):
        FieldViewer("fit", runs / "fit", "field fit").click(camera, 8, 9, "select")

    def singular(*args, **kwargs):
        raise torch.linalg.LinAlgError("singular")

    monkeypatch.setattr(session, "recolor", singular)
    with pytest.raises(ValueError, match=r"recolour: no step of θ_D reaches pixel \(8, 9\)"):
        viewer.click(camera, 8, 9, "recolor")


def test_splat_edits_change_what_resonates_with_the_click(splat_runs):
    runs, scene = splat_runs
    viewer = SplatViewer("shape", runs / "shape", "splat shape")
    click, mask = _object(scene)
    camera = Camera(click.view)
    before = viewer.picture(camera).astype(float) / 255
    for mode in ("move", "remove", "recolor"):
        viewer.click(camera, click.x, click.y, mode, color=(1.0, 0.0, 0.0))
        change = np.abs(viewer.picture(camera).astype(float) / 255 - before).max(axis=-1)
        print(mode, change[mask].mean(), change[~mask].mean())
        assert change[mask].mean() > 4 * change[~mask].mean(), mode
        viewer.reset()
    viewer.click(camera, click.x, click.y, "label")
    viewer.click(camera, 0, 0, "label")
    labels = viewer.draw_overlay(viewer.edit, viewer.overlay, camera, viewer.camera_views(camera), 0.5)[0]
    assert labels.shape == mask.shape
    with pytest.raises(ValueError, match="not shaped"):
        SplatViewer("fit", runs / "fit", "splat fit").click(camera, click.x, click.y, "recolor")


# --- HTTP API and command ------------------------------------------------------------------------------------


@contextmanager
def serving(root, **kwargs):
    server = ViewerServer(root, port=0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _request(server, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(server.url + path.lstrip("/"), data=data)) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_api_answers_bad_requests_and_keeps_serving(field_runs, monkeypatch, tmp_path):
    runs, _ = field_runs
    with serving(runs, out=tmp_path / "saved") as server:
        assert sorted(server.runs) == ["fit", "shape"]
        status, body = _request(server, "/api/runs")
        assert status == 200 and {r["name"]: r["shaped"] for r in json.loads(body)["runs"]} == {"fit": False,
                                                                                               "shape": True}
        status, body = _request(server, "/api/render?run=shape&view=1&yaw=10&scale=0.5")
        assert status == 200 and Image.open(io.BytesIO(body)).size == (8, 8)
        bad = {"/api/render?run=nope": "unknown run 'nope'", "/api/render?run=shape&yaw=abc": "yaw must be a number",
               "/api/render?run=shape&scale=2": "scale must be in", "/api/render?run=shape&view=99": "view must be in"}
        for path, message in bad.items():
            status, body = _request(server, path)
            assert status == 400 and message in json.loads(body)["error"], path
        click = {"run": "shape", "view": 0, "x": 8, "y": 8, "mode": "select"}
        for change, message in [({"x": 40}, "outside the 16x16 image"), ({"run": "fit"}, "not shaped"),
                                ({"mode": "fly"}, "mode must be one of"), ({"color": "red"}, "color must be")]:
            status, body = _request(server, "/api/click", {**click, **change})
            assert status == 400 and message in json.loads(body)["error"], change
        status, body = _request(server, "/api/click", click)
        assert status == 200 and json.loads(body)["image"].startswith("data:image/png;base64,")
        monkeypatch.setattr(FieldViewer, "picture", lambda *a, **k: 1 / 0)
        status, body = _request(server, "/api/render?run=shape")
        assert status == 500 and "ZeroDivisionError" in json.loads(body)["error"]
        monkeypatch.undo()
        status, body = _request(server, "/api/save", {"run": "shape", "view": 2})
        assert status == 200 and Path(json.loads(body)["path"]).is_file()
        assert _request(server, "/")[0] == 200 and _request(server, "/nope")[0] == 404


def test_find_runs_names_what_it_expected(field_runs, tmp_path):
    runs, _ = field_runs
    assert list(find_runs(runs / "shape")) == ["shape"]
    with pytest.raises(FileNotFoundError, match="not found"):
        find_runs(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="holds no run to view"):
        find_runs(tmp_path)
    RunDir(tmp_path / "other").write_config({}, 0, "pointcloud train")
    with pytest.raises(ValueError, match="was written by pointcloud train; 'view' expects"):
        find_runs(tmp_path / "other")


def test_view_command_binds_loopback_and_warns_for_other_hosts(field_runs, monkeypatch, capsys):
    runs, _ = field_runs
    bound = []

    def serve(self):
        bound.append(self.server_address[0])
        raise KeyboardInterrupt

    monkeypatch.setattr(ViewerServer, "serve_forever", serve)
    cli.main(["view", str(runs), "--port", "0"])  # a one-command group: no command name needed
    out = capsys.readouterr()
    assert bound == ["127.0.0.1"] and "open http://127.0.0.1:" in out.out and "warning" not in out.err
    view(ViewConfig(run=runs, host="0.0.0.0", port=0))
    assert bound[-1] == "0.0.0.0" and "warning: listening on 0.0.0.0" in capsys.readouterr().err
    monkeypatch.undo()
    with serving(runs) as server, pytest.raises(ValueError, match="cannot listen on 127.0.0.1:.*choose another --port"):
        ViewerServer(runs, port=server.server_address[1])


# --- the page in a real browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium: the viewer's browser test needs Debian's chromium (apt-get install -y chromium; "
                    "make test installs it when it can)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _wait_render(page, renders: int) -> None:
    page.wait_for_function(f"window.viewer.renders > {renders} && window.viewer.lastScale === 1", timeout=60_000)


def _screenshot(page, height: int, width: int) -> np.ndarray:
    """``[H, W, 3]`` floats: the displayed image's screenshot sampled at the centre of each rendered pixel."""
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#view").screenshot())).convert("RGB"), float) / 255
    ys = ((np.arange(height) + 0.5) * shot.shape[0] / height).astype(int)
    xs = ((np.arange(width) + 0.5) * shot.shape[1] / width).astype(int)
    return shot[ys][:, xs]


def _click(page, x: int, y: int, height: int, width: int) -> None:
    clicks = page.evaluate("window.viewer.clicks")
    box = page.locator("#view").bounding_box()
    page.mouse.click(box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height)
    page.wait_for_function(f"window.viewer.clicks > {clicks}", timeout=60_000)


def _message(page) -> tuple[str, bool]:
    return page.inner_text("#message"), page.get_attribute("#message", "class") == "error"


def test_page_selects_and_recolours_the_clicked_object(browser, splat_runs):
    runs, scene = splat_runs
    click, mask = _object(scene)
    h, w = mask.shape
    with serving(runs) as server:
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(server.url)  # the first shaped run: shape
        _wait_render(page, 0)
        renders = page.evaluate("window.viewer.renders")
        page.select_option("#views", str(click.view))
        _wait_render(page, renders)
        before = _screenshot(page, h, w)

        _click(page, click.x, click.y, h, w)  # select mode is the default
        text, error = _message(page)
        assert not error and text.startswith("select"), text
        highlighted = np.abs(_screenshot(page, h, w) - before).max(axis=-1) > 0.15
        iou = (highlighted & mask).sum() / (highlighted | mask).sum()
        print(f"\nselect: IoU {iou:.2f} of the highlight with the clicked object")
        assert iou >= 0.5, f"IoU {iou:.2f} of the highlight with the clicked object"
        assert highlighted[~mask].mean() < 0.1  # the background is not highlighted

        renders = page.evaluate("window.viewer.renders")
        page.click("#reset")
        _wait_render(page, renders)
        assert np.abs(_screenshot(page, h, w) - before).max() < 0.02  # reset: the plain render again
        page.check("input[name=mode][value=recolor]")
        page.eval_on_selector("#color", "e => e.value = '#ff0000'")
        _click(page, click.x, click.y, h, w)
        text, error = _message(page)
        assert not error and text.startswith("recolour"), text
        change = np.abs(_screenshot(page, h, w) - before).max(axis=-1)
        rest = ~ndimage.binary_dilation(mask)
        print(f"recolour: median change {np.median(change[mask]):.3f} on the object, mean {change[rest].mean():.3f} "
              f"and 95th percentile {np.quantile(change[rest], 0.95):.3f} elsewhere")
        assert np.median(change[mask]) > 0.15, "the object's pixels changed colour"
        assert change[rest].mean() < 0.04 and np.quantile(change[rest], 0.95) < 0.12, "the rest stayed"
        page.click("#save")  # the edited view as a PNG
        page.wait_for_function("document.getElementById('message').textContent.startsWith('saved')")
        saved = np.asarray(Image.open(_message(page)[0].removeprefix("saved ")).convert("RGB"), float) / 255
        assert np.abs(saved - _screenshot(page, h, w)).max() < 0.02

        renders = page.evaluate("window.viewer.renders")
        page.click("#reset")  # select elsewhere (the largest other region): the object is not highlighted
        _wait_render(page, renders)
        page.check("input[name=mode][value=select]")
        other = scene.train.instance[click.view].numpy()
        ids, counts = np.unique(other[~ndimage.binary_dilation(mask, iterations=2) & (other >= 0)], return_counts=True)
        inside = ndimage.distance_transform_edt(np.pad(other == ids[np.argmax(counts)], 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
        _click(page, int(x), int(y), h, w)
        highlighted = np.abs(_screenshot(page, h, w) - before).max(axis=-1) > 0.15
        assert highlighted[y, x] and (highlighted & mask).sum() < 0.2 * mask.sum()

        timings = page.evaluate("window.viewer.timings")
        print(f"\nclick -> result at {w}x{h}: " + ", ".join(f"{t['mode']} {t['ms'] / 1000:.2f} s" for t in timings))
        assert all(t["ms"] <= 3000 for t in timings), timings

        page.evaluate("window.viewer.clickAt(999, 0)")  # bad requests: a message in the page, the server goes on
        page.wait_for_function("document.getElementById('message').className === 'error'")
        assert "outside the" in _message(page)[0]
        renders = page.evaluate("window.viewer.renders")
        page.select_option("#run", "fit")
        _wait_render(page, renders)
        _click(page, click.x, click.y, h, w)  # select on an unshaped run
        text, error = _message(page)
        assert error and "not shaped" in text, text
        page.goto(server.url + "?run=nope")
        page.wait_for_function("window.viewer.errors > 0")
        text, error = _message(page)
        assert error and "unknown run 'nope'" in text, text
        page.goto(server.url)
        _wait_render(page, 0)
        page.close()



if os.environ.get("PRIORS3D_VIEWER_RUNS"):  # timing on real runs (docs/benchmarks.md); not part of the suite

    def test_click_times_on_given_runs(browser):
        """Click -> result times at the runs' own resolution for every shaped run under $PRIORS3D_VIEWER_RUNS: a
        select as soon as the view appears (its Jacobians still being computed), a second select once they are
        cached, then a recolour of the same object."""
        root = Path(os.environ["PRIORS3D_VIEWER_RUNS"])
        with serving(root) as server:
            for info in server.runs_info():
                if not info["shaped"]:
                    continue
                click, mask = _object(server.viewer(info["name"]).scene)
                h, w = mask.shape
                page = browser.new_page(viewport={"width": 900, "height": 700})
                page.goto(f"{server.url}?run={info['name']}")
                _wait_render(page, 0)
                renders = page.evaluate("window.viewer.renders")
                page.select_option("#views", str(click.view))
                _wait_render(page, renders)
                _click(page, click.x, click.y, h, w)
                page.wait_for_timeout(3000)
                _click(page, click.x, click.y, h, w)
                page.check("input[name=mode][value=recolor]")
                _click(page, click.x, click.y, h, w)
                timings = page.evaluate("window.viewer.timings")
                print(f"\n{info['name']} ({info['kind']}, {w}x{h}): "
                      + ", ".join(f"{t['mode']} {t['ms'] / 1000:.2f} s (server {t['server_ms']} ms)" for t in timings))
                assert not page.get_attribute("#message", "class") and all(t["ms"] <= 3000 for t in timings), timings
                page.close()

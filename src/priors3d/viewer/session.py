"""The model side of the viewer: one fitted or shaped run, its cameras, progressive renders, and the library's own
select / recolour / move / remove / label from one clicked pixel of the current camera.

A camera is a dataset view (train views, then test views) orbited about a pivot in front of it (``Camera``); a
click is a pixel of that camera at the viewer's resolution (the scene's, times ``scale``), so clicks work from any
orbit, not only from the dataset's views. What a click runs:

- NeRF (``field shape`` runs): select = pixels whose Jacobian has ``|cos| >= threshold`` with the clicked pixel's
  (``shaping.edit.select``); recolour = ``shaping.edit.recolor``; label = each click a new label, every pixel takes
  the label it resonates with most (first-order ``propagate_labels``: ``prototypes``, ``first_order_responses``,
  ``argmax_labels``; no label below the threshold). The camera's pixel Jacobians, what select and label need, are
  computed once per camera (in the background once the camera stops moving, ``FieldViewer.prefetch``) and cached.
- Gaussians (``splat shape`` runs): the clicked Gaussian is ``clicked_gaussian``'s; recolour, move and remove are
  ``solve_edit`` of the decoder's ``θ_D`` as in ``priors3d splat edit``; select = the Gaussians whose motion
  Jacobians resonate with the clicked one's (``|cos| >= threshold``), drawn by rendering them; label as for NeRF, per
  Gaussian. The Gaussians' Jacobians do not depend on ``θ_D`` (the decoder is linear in it): computed once.

Edits (recolour, move, remove) stack, select and label draw an overlay; ``undo`` steps back, ``reset`` clears.
Unshaped runs (``field fit``, ``splat fit``) are rendered, but a click there is refused with a message: their
Jacobians do not group objects. Every method is thread-safe (one lock per run).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import roma
import torch
from torch import Tensor

from priors3d.fields.fit import load_field
from priors3d.fields.formats import fitted_scene
from priors3d.fields.rays import scene_aabb
from priors3d.fields.render import render_nerf_views, render_rays
from priors3d.fields.splat import render_gaussians
from priors3d.fields.views import Scene, Views
from priors3d.shaping.clicks import Click
from priors3d.shaping.decoder import decoded_attributes, decoder_deltas, gaussian_jacobians, render_decoded, solve_edit
from priors3d.shaping.edit import recolor
from priors3d.shaping.infogs import clicked_gaussian, edit_target, load_shaped
from priors3d.shaping.jacobian import pixel_jacobians_chunked
from priors3d.shaping.propagate import (argmax_labels, click_jacobians, click_rays, first_order_responses, prototypes,
                                        view_rays)
from priors3d.viz import palette

MODES = ("select", "recolor", "move", "remove", "label")
HIGHLIGHT = (1.0, 0.0, 1.0)
"""Colour of selected pixels (magenta), blended over the render with weight ``OVERLAY_ALPHA``."""
OVERLAY_ALPHA = 0.6


@dataclass(frozen=True)
class Camera:
    """Dataset view ``view`` (train views first, then test views) turned by ``yaw`` degrees about the scene's up axis
    and ``pitch`` degrees about the camera's right axis, both through a pivot in front of it, then moved ``dolly``
    scene units along its viewing direction."""

    view: int
    yaw: float = 0.0
    pitch: float = 0.0
    dolly: float = 0.0


class RunViewer:
    """One run in the viewer (see the module docstring); subclasses render and answer clicks for NeRF or Gaussians."""

    modes: tuple[str, ...] = ()

    def __init__(self, name: str, kind: str, scene: Scene, edit, scale: float = 1.0):
        if not 0 < scale <= 8:
            raise ValueError(f"scale must be in (0, 8], got {scale}")
        self.name, self.kind, self.scene = name, kind, scene
        self.c2w = torch.cat([scene.train.c2w, scene.test.c2w]).float()
        self.intrinsics = torch.cat([scene.train.intrinsics, scene.test.intrinsics]).float()
        self.view_names = [(n, "train") for n in scene.train.names] + [(n, "test") for n in scene.test.names]
        self.scene_hw = scene.train.hw
        self.height, self.width = (max(round(n * scale), 1) for n in self.scene_hw)
        aabb = scene_aabb(scene).double()
        self.centre, self.extent = aabb.mean(dim=0), float((aabb[1] - aabb[0]).norm())
        up = self.c2w[:, :3, 1].double().mean(dim=0)  # the cameras' mean up axis
        self.up = up / up.norm().clamp_min(1e-12)
        self.lock = threading.RLock()
        self._versions = itertools.count()
        self.base = (edit, next(self._versions))
        self.edit, self.overlay, self.history = self.base, None, []

    @property
    def shaped(self) -> bool:
        return bool(self.modes)

    def info(self) -> dict:
        """What the page shows: kind, modes, views, resolution and a camera step."""
        return {"name": self.name, "kind": self.kind, "shaped": self.shaped, "modes": list(self.modes),
                "views": [{"name": n, "split": s} for n, s in self.view_names], "height": self.height,
                "width": self.width, "dolly_step": 0.05 * self.extent}

    # --- cameras -------------------------------------------------------------------------------------------
    def pose(self, camera: Camera) -> Tensor:
        """``[4, 4]`` camera-to-world of ``camera`` (OpenGL axes)."""
        if not 0 <= camera.view < len(self.c2w):
            raise ValueError(f"view must be in 0..{len(self.c2w) - 1} (train views, then test views), "
                             f"got {camera.view}")
        if not all(math.isfinite(v) for v in (camera.yaw, camera.pitch, camera.dolly)):
            raise ValueError(f"yaw, pitch and dolly must be finite numbers, got {camera}")
        c2w = self.c2w[camera.view].double()
        rot, eye = c2w[:3, :3], c2w[:3, 3]
        forward = -rot[:, 2]
        pivot = eye + forward * max(float((self.centre - eye) @ forward), 0.25 * self.extent)
        turn = (roma.rotvec_to_rotmat(self.up * math.radians(camera.yaw))
                @ roma.rotvec_to_rotmat(rot[:, 0] * math.radians(camera.pitch)))
        out = torch.eye(4, dtype=torch.float64)
        out[:3, :3] = turn @ rot
        out[:3, 3] = pivot + turn @ (eye - pivot) - out[:3, 2] * camera.dolly
        return out.float()

    def camera_views(self, camera: Camera, scale: float = 1.0) -> Views:
        """``camera`` as one view at ``scale`` x the viewer's resolution (a blank image: only its rays are used)."""
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1] (a fraction of the viewer's resolution), got {scale}")
        pose = self.pose(camera)
        h, w = max(round(self.height * scale), 1), max(round(self.width * scale), 1)
        sx, sy = w / self.scene_hw[1], h / self.scene_hw[0]
        k = self.intrinsics[camera.view] * torch.tensor([sx, sy, sx, sy])
        return Views(torch.zeros(1, h, w, 3), pose[None], k[None], [self.view_names[camera.view][0]])

    # --- pictures ------------------------------------------------------------------------------------------
    def picture(self, camera: Camera, scale: float = 1.0, threshold: float = 0.9) -> np.ndarray:
        """``[H, W, 3]`` uint8 render of the edited run at ``camera``, with the select / label overlay when it can be
        drawn at this scale."""
        _check_threshold(threshold)
        views = self.camera_views(camera, scale)
        with self.lock:
            edit, overlay = self.edit, self.overlay
            rgb = self.render(edit, views)
        drawn = None if overlay is None else self.draw_overlay(edit, overlay, camera, views, threshold)
        if drawn is not None:
            weight, colour = drawn
            rgb = rgb + OVERLAY_ALPHA * weight[..., None] * (colour - rgb)
        return (rgb.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)

    def render(self, edit, views: Views) -> Tensor:
        """``[H, W, 3]`` render of the one view ``views`` in edit state ``edit``."""
        raise NotImplementedError

    def draw_overlay(self, edit, overlay: tuple, camera: Camera, views: Views,
                     threshold: float) -> tuple[Tensor, Tensor] | None:
        """Weight ``[H, W]`` in [0, 1] and colour ``[H, W, 3]`` of the overlay, or None when not drawn at this scale."""
        raise NotImplementedError

    # --- clicks --------------------------------------------------------------------------------------------
    def click(self, camera: Camera, x: int, y: int, mode: str, color: tuple[float, float, float] = (0.1, 0.8, 0.2),
              threshold: float = 0.9, offset: tuple[float, float, float] = (0.0, 0.0, 0.3)) -> str:
        """Run ``mode`` at pixel ``(x, y)`` of ``camera`` (viewer resolution); returns a one-line message."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not self.shaped:
            raise ValueError(f"{self.name} is a {self.kind} run, not shaped: its Jacobians do not group objects, so "
                             f"{mode} has nothing to follow. Pick a shaped run ({self.shape_command} writes one)")
        if mode not in self.modes:
            raise ValueError(f"{mode} needs Gaussians: a {self.kind} run offers {', '.join(self.modes)}")
        _check_threshold(threshold)
        color = _triple(color, "color")
        if not all(0 <= c <= 1 for c in color):
            raise ValueError(f"color must be RGB in [0, 1], got {color}")
        views = self.camera_views(camera)
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise ValueError(f"the click ({x}, {y}) is outside the {self.width}x{self.height} image "
                             f"(x 0..{self.width - 1}, y 0..{self.height - 1})")
        with self.lock:
            before = (self.edit, self.overlay)
            message = getattr(self, f"_{mode}")(views, Click(0, x, y), color=color, threshold=threshold,
                                                offset=_triple(offset, "offset"))
            self.history.append(before)
        return message

    def undo(self) -> str:
        with self.lock:
            if not self.history:
                return "nothing to undo"
            self.edit, self.overlay = self.history.pop()
            return f"undone ({len(self.history)} steps left)"

    def reset(self) -> str:
        with self.lock:
            self.edit, self.overlay, self.history = self.base, None, []
            return "reset: the run as loaded"

    def _add_label(self, anchor: Tensor) -> None:
        """A label overlay with one more click (``anchor``: its Jacobian ``[1, P]`` or its Gaussian ``[1]``)."""
        earlier = self.overlay[1] if self.overlay is not None and self.overlay[0] == "label" else anchor[:0]
        self.overlay = ("label", torch.cat([earlier, anchor]))

    def _edited(self, edit) -> None:
        """Make ``edit`` the current edit state (a new version); edits hide the select / label overlay."""
        self.edit, self.overlay = (edit, next(self._versions)), None


class FieldViewer(RunViewer):
    """A NeRF run. ``recolor_steps`` and ``recolor_keep`` are ``shaping.edit.recolor``'s ``steps`` and ``keep``."""

    shape_command = "priors3d field shape RUN"

    def __init__(self, name: str, run_dir: Path, kind: str, scale: float = 1.0, recolor_steps: int = 5,
                 recolor_keep: int = 512, scenes: dict | None = None):
        model, self.setup = load_field(run_dir, "view")
        scenes = {} if scenes is None else scenes
        key = (self.setup.scene, self.setup.downscale, self.setup.background)
        if key not in scenes:
            scenes[key] = fitted_scene(self.setup)
        super().__init__(name, kind, scenes[key], model, scale)
        self.modes = ("select", "recolor", "label") if kind == "field shape" else ()
        self.recolor_steps, self.recolor_keep = recolor_steps, recolor_keep
        self._jacobians: OrderedDict[tuple, list[Tensor]] = OrderedDict()
        self._wanted: Camera | None = None
        self._prefetching = False
        self._prefetch_lock = threading.Lock()

    def render(self, edit, views: Views) -> Tensor:
        return render_nerf_views(edit[0], views, self.setup)[0]["rgb"]

    def picture(self, camera: Camera, scale: float = 1.0, threshold: float = 0.9) -> np.ndarray:
        image = super().picture(camera, scale, threshold)
        if scale == 1.0 and self.shaped:
            self.prefetch(camera)
        return image

    def jacobians(self, camera: Camera, edit=None, stop: Callable[[], bool] | None = None,
                  chunk: int = 512) -> Tensor | None:
        """``[H, W, P]`` pixel Jacobians of the field (edit state ``edit``, default the current one) at ``camera``
        and the viewer's resolution, as ``view_jacobians``; computed ``chunk`` rays at a time (the lock is free
        between chunks), cached for the last few cameras. None when ``stop()`` turned true between chunks."""
        with self.lock:
            edit = self.edit if edit is None else edit
            key = (camera, edit[1])
            parts = self._jacobians.setdefault(key, [])
            self._jacobians.move_to_end(key)
            while len(self._jacobians) > 4:
                self._jacobians.popitem(last=False)
        rays = [r[0] for r in view_rays(self.camera_views(camera), self.setup)]
        while True:
            if stop is not None and stop():
                return None
            with self.lock:
                done = sum(len(p) for p in parts)
                if done >= len(rays[0]):
                    return torch.cat(parts).reshape(self.height, self.width, -1)
                parts.append(pixel_jacobians_chunked(edit[0], *(r[done:done + chunk] for r in rays), chunk=chunk,
                                                     **self.setup.sampling(edit[0])))

    def prefetch(self, camera: Camera) -> None:
        """Compute ``camera``'s Jacobians in a background thread (what a click there needs), dropping the work for
        an earlier camera as soon as a newer one is asked for."""
        with self._prefetch_lock:
            self._wanted = camera
            if not self._prefetching:
                self._prefetching = True
                threading.Thread(target=self._prefetch_loop, daemon=True, name=f"jacobians {self.name}").start()

    def _prefetch_loop(self) -> None:
        try:
            while True:
                with self._prefetch_lock:
                    camera, self._wanted = self._wanted, None
                    if camera is None:
                        return
                self.jacobians(camera, stop=lambda: self._wanted is not None)
        finally:
            with self._prefetch_lock:
                self._prefetching = False

    def draw_overlay(self, edit, overlay: tuple, camera: Camera, views: Views,
                     threshold: float) -> tuple[Tensor, Tensor] | None:
        if views.hw != (self.height, self.width):
            return None  # a preview while the camera moves: Jacobians only at the viewer's resolution
        labels, colours = _overlay_labels(self.jacobians(camera, edit), overlay, threshold)
        return (labels >= 0).float(), colours[labels.clamp_min(0)]

    def _select(self, views: Views, click: Click, threshold: float, **_) -> str:
        anchor = click_jacobians(self.edit[0], self.setup, views, [click])  # [1, P]
        self.overlay = ("select", anchor)
        return f"select: pixel ({click.x}, {click.y}) and what resonates with it (|cos| ≥ {threshold:.2f})"

    def _label(self, views: Views, click: Click, threshold: float, **_) -> str:
        self._add_label(click_jacobians(self.edit[0], self.setup, views, [click]))
        return (f"label {len(self.overlay[1]) - 1}: pixel ({click.x}, {click.y}); every pixel takes the label it "
                f"resonates with most (none below {threshold:.2f})")

    def _recolor(self, views: Views, click: Click, color: tuple[float, float, float], threshold: float, **_) -> str:
        # A pixel's colour is its samples' sigmoid colours times its opacity plus the background: aim inside that
        # range (Gauss-Newton towards a colour out of reach saturates the sigmoid and its Jacobian vanishes).
        with torch.no_grad():
            acc = render_rays(self.edit[0], *click_rays(views, self.setup, [click]),
                              **self.setup.sampling(self.edit[0]))["acc"][0]
        behind = torch.tensor(self.setup.background or (0.0, 0.0, 0.0)) * (1 - acc)
        color = tuple((behind + acc * torch.tensor(color).clamp(0.05, 0.95)).tolist())
        try:
            self._edited(recolor(self.edit[0], self.setup, views, click, color, self.recolor_steps,
                                 keep=self.recolor_keep, threshold=threshold))
        except torch.linalg.LinAlgError:
            raise ValueError(f"recolour: no step of θ_D reaches pixel ({click.x}, {click.y})'s colour while holding "
                             f"the pixels that do not resonate with it (a singular system); lower the threshold or "
                             f"click another pixel") from None
        return f"recolour: pixel ({click.x}, {click.y}) and what resonates with it -> RGB {_rgb_text(color)}"


class SplatViewer(RunViewer):
    """A Gaussian run (``splat fit`` or ``splat shape``); edits are values of the decoder's ``θ_D``."""

    shape_command = "priors3d splat shape RUN"

    def __init__(self, name: str, run_dir: Path, kind: str, scale: float = 1.0, edit_steps: int = 2):
        run = load_shaped(run_dir)
        self.field, self.setup, self.decoder, self.ids = run.field, run.setup, run.decoder, run.ids
        self.decoder.requires_grad_(False)
        theta = {n: p.detach().clone() for n, p in self.decoder.named_parameters()
                 if n in self.decoder.head_names()}
        super().__init__(name, kind, run.scene, theta, scale)
        self.modes = MODES if kind == "splat shape" else ()
        self.edit_steps = edit_steps
        self._deltas: tuple[int, Tensor] | None = None
        self._motion: Tensor | None = None

    def deltas(self, edit) -> Tensor:
        """``[G, 7]`` decoded deltas in edit state ``edit`` (the last one cached)."""
        if self._deltas is None or self._deltas[0] != edit[1]:
            with torch.no_grad():
                self._deltas = (edit[1], decoder_deltas(self.decoder, edit[0]))
        return self._deltas[1]

    def motion_jacobians(self) -> Tensor:
        """``[G, 3 P]`` every Gaussian's motion Jacobian (the same for every ``θ_D``)."""
        if self._motion is None:
            self._motion = torch.cat([gaussian_jacobians(self.decoder, self.decoder.inputs(part)).detach()
                                      for part in torch.arange(len(self.decoder)).split(4096)])
        return self._motion

    def render(self, edit, views: Views) -> Tensor:
        with torch.no_grad():
            return render_decoded(self.field, self.deltas(edit), views.c2w[0], views.intrinsics[0], *views.hw,
                                  **self.setup.options())["rgb"].clamp(0, 1)

    def draw_overlay(self, edit, overlay: tuple, camera: Camera, views: Views,
                     threshold: float) -> tuple[Tensor, Tensor]:
        with self.lock:
            labels, colours = _overlay_labels(self.motion_jacobians(), overlay, threshold)  # [G]
            member = (labels >= 0).float()[:, None]
            decoded = decoded_attributes(self.field, self.deltas(edit))
            with torch.no_grad():  # the labelled Gaussians' colours and coverage, alpha-composited
                out = render_gaussians(decoded["means"], self.field.covariances(),
                                       torch.sigmoid(decoded["opacity_logits"]),
                                       torch.cat([colours[labels.clamp_min(0)] * member, member], dim=1),
                                       views.c2w[0], views.intrinsics[0], *views.hw,
                                       **{**self.setup.options(), "background": None})["rgb"]
        weight = out[..., 3].clamp(0, 1)
        return weight, out[..., :3] / weight[..., None].clamp_min(1e-6)

    def _gaussian(self, views: Views, click: Click) -> int:
        return clicked_gaussian(self.field, self.deltas(self.edit), views, self.setup, click, self.ids)

    def _select(self, views: Views, click: Click, threshold: float, **_) -> str:
        g = self._gaussian(views, click)
        self.overlay = ("select", torch.tensor([g]))
        n = int((first_order_responses(self.motion_jacobians(), self.motion_jacobians()[g:g + 1]) >= threshold).sum())
        return (f"select: Gaussian {g} at ({click.x}, {click.y}) and {n - 1} more that resonate with it "
                f"(|cos| ≥ {threshold:.2f})")

    def _label(self, views: Views, click: Click, threshold: float, **_) -> str:
        g = self._gaussian(views, click)
        self._add_label(torch.tensor([g]))
        return (f"label {len(self.overlay[1]) - 1}: Gaussian {g} at ({click.x}, {click.y}); every Gaussian takes the "
                f"label it resonates with most (none below {threshold:.2f})")

    def _solve(self, views: Views, click: Click, op: str, **options) -> int:
        """Edit what moves with the clicked Gaussian ``g`` (``op`` and ``options`` as ``infogs.edit_target``)."""
        g = self._gaussian(views, click)
        with torch.no_grad():  # solve_edit starts from the decoder's own θ_D: the current edit
            for name, value in self.edit[0].items():
                self.decoder.get_parameter(name).copy_(value)
        output, target = edit_target(self.field, self.deltas(self.edit), g, op, **options)
        theta = solve_edit(self.decoder, g, output, target, self.edit_steps)
        self._edited({n: t.detach() for n, t in theta.items()})
        return g

    def _recolor(self, views: Views, click: Click, color: tuple[float, float, float], **_) -> str:
        g = self._solve(views, click, "recolor", color=color)
        return f"recolour: Gaussian {g} at ({click.x}, {click.y}) and its object -> RGB {_rgb_text(color)}"

    def _move(self, views: Views, click: Click, offset: tuple[float, float, float], **_) -> str:
        g = self._solve(views, click, "move", offset=offset)
        return f"move: Gaussian {g} at ({click.x}, {click.y}) and its object by {_rgb_text(offset)}"

    def _remove(self, views: Views, click: Click, **_) -> str:
        g = self._solve(views, click, "remove")
        return f"remove: Gaussian {g} at ({click.x}, {click.y}) and its object"


def _overlay_labels(jacobians: Tensor, overlay: tuple, threshold: float) -> tuple[Tensor, Tensor]:
    """Labels ``[...]`` (-1 = none) of ``jacobians [..., P]`` and a colour table ``[K, 3]`` for an overlay: select
    = ``|cos| >= threshold`` with its anchor; label = argmax over the anchors' labels (first-order propagation)."""
    kind, anchors = overlay
    if anchors.dtype == torch.long:  # Gaussians: anchors are indices into ``jacobians [G, P]``
        anchors = jacobians[anchors]
    k = len(anchors)
    responses = first_order_responses(jacobians, prototypes(anchors, torch.arange(k), k))
    labels = argmax_labels(responses, torch.ones(k, dtype=torch.bool), threshold)
    colours = torch.tensor([HIGHLIGHT]) if kind == "select" else palette(k).float() / 255
    return labels, colours


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a cosine in [0, 1], got {threshold}")


def _triple(values, name: str) -> tuple[float, float, float]:
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{name} must be three finite numbers, got {values!r}")
    return numbers


def _rgb_text(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"

"""Procedural indoor rooms: floor, walls, ceiling and furniture from analytic primitives.

World axes: z up, the room spans ``[-X/2, X/2] x [-Y/2, Y/2] x [0, Z]``. Furniture stands in a ring
along the walls; the cameras fly an ellipse around the free centre, looking across the room and
down, so each object is seen from many views. Everything is a deterministic function of ``RoomConfig.seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from priors3d.fields.formats import split_indices
from priors3d.fields.scenes.primitives import BOX, CHECKER, CYLINDER, NOISE, SPHERE, STRIPES, ScenePart, Primitives
from priors3d.fields.scenes.raycast import World, render_views
from priors3d.fields.views import Scene, Views

CLASS_NAMES = ("floor", "wall", "ceiling", "table", "chair", "shelf", "box", "lamp", "ball", "picture", "window")
CLASS_COLORS = ((140, 110, 80), (200, 200, 190), (240, 240, 240), (230, 160, 40), (60, 120, 230), (150, 80, 40),
                (220, 60, 60), (250, 240, 80), (60, 200, 90), (190, 80, 200), (90, 220, 230))
FLOOR, WALL, CEILING, TABLE, CHAIR, SHELF, BOX_, LAMP, BALL, PICTURE, WINDOW = range(len(CLASS_NAMES))

WOOD, DARK_WOOD, CARDBOARD = (0.55, 0.38, 0.22), (0.38, 0.25, 0.15), (0.62, 0.46, 0.30)
RED, BLUE, GREEN, YELLOW = (0.72, 0.20, 0.18), (0.20, 0.33, 0.68), (0.30, 0.55, 0.28), (0.85, 0.72, 0.25)
TEAL, GREY, WHITE = (0.15, 0.50, 0.50), (0.50, 0.50, 0.52), (0.92, 0.92, 0.90)
CHAIR_COLORS = (RED, BLUE, GREEN, YELLOW, TEAL, WOOD)  # WOOD: a chair the colour of the table and shelf
WALL_COLORS = ((0.86, 0.82, 0.72), (0.72, 0.76, 0.80), (0.74, 0.79, 0.69))


@dataclass
class RoomConfig:
    """A procedural room and its camera trajectory.

    Attributes:
        seed: layout, colours and textures are a deterministic function of it.
        width: image width in pixels.
        height: image height in pixels.
        n_views: cameras on the trajectory.
        fov_deg: horizontal field of view in degrees.
        test_every: every test_every-th view (from view test_every // 2 on) is a test view.
        size: room extent (X, Y, Z) in metres.
        n_chairs: chairs to place (a table, a shelf and a lamp are always tried).
        n_boxes: boxes to place.
        n_balls: balls to place (the first one on the table).
        overview_fov_deg: field of view of four extra training cameras, one per corner at 1.2 m looking at the
            opposite corner, each seeing every class of the room (0 = none); they let one view hold a click
            for every class.
        light_samples: the ceiling light is sampled on a k x k grid (1 = hard shadows, 0 = no shadows).
        ambient: fraction of the albedo lit everywhere.
    """

    seed: int = 0
    width: int = 64
    height: int = 64
    n_views: int = 48
    fov_deg: float = 65.0
    test_every: int = 8
    size: tuple[float, float, float] = (4.0, 4.0, 2.6)
    n_chairs: int = 3
    n_boxes: int = 3
    n_balls: int = 2
    overview_fov_deg: float = 100.0
    light_samples: int = 2
    ambient: float = 0.35


@dataclass
class Room:
    """A built room: the renderable world, its cameras and its label vocabulary.

    Attributes:
        world: what :func:`render_views` draws.
        c2w: ``[V, 4, 4]`` trajectory cameras (OpenGL axes). intrinsics: ``[V, 4]`` ``(fx, fy, cx, cy)``.
        instance_classes: the class of each instance id ``0..I-1``. instance_names: e.g. ``"chair_1"``.
        aabb: ``[2, 3]`` the room interior, padded by 5 cm. near, far: ray bounds.
    """

    config: RoomConfig
    world: World
    c2w: Tensor
    intrinsics: Tensor
    instance_classes: list[int]
    instance_names: list[str]
    aabb: Tensor
    near: float
    far: float


def _placed(parts: list[ScenePart], x: float, y: float, yaw: float, instance: int) -> list[ScenePart]:
    """Move parts given in an object frame (origin on the floor) to ``(x, y)`` turned by ``yaw``; label them
    ``instance``."""
    c, s = math.cos(yaw), math.sin(yaw)
    for p in parts:
        px, py, pz = p.center
        p.center, p.yaw, p.instance = (x + c * px - s * py, y + s * px + c * py, pz), p.yaw + yaw, instance
    return parts


def _table(color, rng: np.random.Generator) -> tuple[list[ScenePart], float, float]:
    w, d, h = rng.uniform(0.8, 1.1), rng.uniform(0.55, 0.7), rng.uniform(0.70, 0.76)
    top = ScenePart(BOX, (0, 0, h - 0.02), (w / 2, d / 2, 0.02), TABLE, -1, color, tuple(0.8 * c for c in color),
                    STRIPES, 0.18, 0)
    legs = [ScenePart(BOX, (sx * (w / 2 - 0.05), sy * (d / 2 - 0.05), (h - 0.04) / 2), (0.03, 0.03, (h - 0.04) / 2),
                      TABLE, -1, color) for sx in (-1, 1) for sy in (-1, 1)]
    return [top] + legs, math.hypot(w, d) / 2, h


def _chair(color) -> list[ScenePart]:
    seat, h = 0.22, 0.45
    legs = [ScenePart(BOX, (sx * (seat - 0.03), sy * (seat - 0.03), (h - 0.03) / 2), (0.02, 0.02, (h - 0.03) / 2),
                      CHAIR, -1, color) for sx in (-1, 1) for sy in (-1, 1)]
    return legs + [ScenePart(BOX, (0, 0, h - 0.015), (seat, seat, 0.03), CHAIR, -1, color),
                   ScenePart(BOX, (-seat + 0.02, 0, h + 0.25), (0.02, seat, 0.22), CHAIR, -1, color)]


def _shelf(color, rng: np.random.Generator) -> tuple[list[ScenePart], float, float]:
    w, d, h = rng.uniform(0.7, 1.0), 0.32, rng.uniform(1.3, 1.7)
    boxes = [((0, sy * (w / 2 - 0.015), h / 2), (d / 2, 0.015, h / 2)) for sy in (-1, 1)]
    boxes.append(((-d / 2 + 0.01, 0, h / 2), (0.01, w / 2, h / 2)))
    boxes += [((0, 0, float(z)), (d / 2, w / 2 - 0.03, 0.02)) for z in np.linspace(0.05, h - 0.02, 4)]
    return [ScenePart(BOX, center, half, SHELF, -1, color) for center, half in boxes], d, w


def _lamp() -> list[ScenePart]:
    return [ScenePart(CYLINDER, (0, 0, 0.02), (0.15, 0.15, 0.02), LAMP, -1, GREY),
            ScenePart(CYLINDER, (0, 0, 0.72), (0.02, 0.02, 0.7), LAMP, -1, GREY),
            ScenePart(CYLINDER, (0, 0, 1.5), (0.17, 0.17, 0.13), LAMP, -1, (1.0, 0.93, 0.75), emissive=True)]


def _shell(size, rng: np.random.Generator) -> list[ScenePart]:
    """Floor, ceiling and four walls as 20 cm slabs just outside the interior (instances 0..5)."""
    X, Y, Z = size[0] / 2, size[1] / 2, size[2]
    t = 0.1
    floor_b = (0.55, 0.50, 0.45) if rng.random() < 0.5 else WOOD
    parts = [ScenePart(BOX, (0, 0, -t), (X + 2 * t, Y + 2 * t, t), FLOOR, 0, (0.42, 0.38, 0.34), floor_b, CHECKER,
                       1.0),
             ScenePart(BOX, (0, 0, Z + t), (X + 2 * t, Y + 2 * t, t), CEILING, 1, WHITE)]
    base = np.array(WALL_COLORS[rng.integers(len(WALL_COLORS))])
    walls = [((-X - t, 0, Z / 2), (t, Y + 2 * t, Z / 2 + 2 * t)), ((X + t, 0, Z / 2), (t, Y + 2 * t, Z / 2 + 2 * t)),
             ((0, -Y - t, Z / 2), (X + 2 * t, t, Z / 2 + 2 * t)), ((0, Y + t, Z / 2), (X + 2 * t, t, Z / 2 + 2 * t))]
    for i, (center, half) in enumerate(walls):
        color = np.clip(base + rng.uniform(-0.05, 0.05, 3), 0, 1)
        parts.append(ScenePart(BOX, center, half, WALL, 2 + i, tuple(color), tuple(color * 0.88), NOISE))
    return parts


def _on_wall(wall: int, along: float, z: float, half_w: float, half_h: float, size, depth: float = 0.01):
    """Centre and half-extents of a thin panel on wall 0..3 (-x, +x, -y, +y)."""
    X, Y = size[0] / 2, size[1] / 2
    if wall < 2:
        x = (-X if wall == 0 else X) + (depth if wall == 0 else -depth)
        return (x, along, z), (depth, half_w, half_h)
    y = (-Y if wall == 2 else Y) + (depth if wall == 2 else -depth)
    return (along, y, z), (half_w, depth, half_h)


def _two_colors(rng: np.random.Generator) -> tuple[tuple, tuple]:
    """Two different colours of ``CHAIR_COLORS``."""
    a, b = rng.choice(len(CHAIR_COLORS), 2, replace=False)
    return CHAIR_COLORS[a], CHAIR_COLORS[b]


class _Floorplan:
    """Rejection sampling of object footprints (circles) in the ring between the walls and the free centre."""

    def __init__(self, size, clear: float, rng: np.random.Generator):
        self.X, self.Y, self.clear, self.rng = size[0] / 2, size[1] / 2, clear, rng
        self.taken: list[tuple[float, float, float]] = []

    def fits(self, x: float, y: float, r: float) -> bool:
        return (abs(x) <= self.X - r - 0.03 and abs(y) <= self.Y - r - 0.03 and math.hypot(x, y) >= self.clear + r
                and all(math.hypot(x - a, y - b) >= r + q + 0.05 for a, b, q in self.taken))

    def place(self, r: float, tries: int = 300) -> tuple[float, float] | None:
        for _ in range(tries):
            x, y = self.rng.uniform(-self.X, self.X), self.rng.uniform(-self.Y, self.Y)
            if self.fits(x, y, r):
                self.taken.append((x, y, r))
                return x, y
        return None

    def against_wall(self, depth: float, width: float, tries: int = 300) -> tuple[float, float, float, int] | None:
        """A spot with the object's back on a wall: ``(x, y, yaw, wall)``; the object's -x side faces the wall."""
        r = math.hypot(depth, width) / 2
        for _ in range(tries):
            wall = int(self.rng.integers(4))
            along = self.rng.uniform(-1, 1) * ((self.Y if wall < 2 else self.X) - width / 2 - 0.05)
            off = depth / 2 + 0.03
            x, y, yaw = {0: (-self.X + off, along, 0.0), 1: (self.X - off, along, math.pi),
                         2: (along, -self.Y + off, math.pi / 2), 3: (along, self.Y - off, -math.pi / 2)}[wall]
            if all(math.hypot(x - a, y - b) >= r + q + 0.05 for a, b, q in self.taken):
                self.taken.append((x, y, r))
                return x, y, yaw, wall
        return None


def build_parts(cfg: RoomConfig) -> tuple[list[ScenePart], list[str]]:
    """All primitives of the room and the name of each instance id."""
    rng = np.random.default_rng(cfg.seed)
    parts = _shell(cfg.size, rng)
    names = ["floor", "ceiling", "wall_0", "wall_1", "wall_2", "wall_3"]
    counts: dict[str, int] = {}

    def new(name: str) -> int:
        counts[name] = counts.get(name, 0) + 1
        names.append(f"{name}_{counts[name] - 1}")
        return len(names) - 1

    plan = _Floorplan(cfg.size, clear=1.0, rng=rng)
    wood = WOOD if rng.random() < 0.5 else DARK_WOOD
    shelf_parts, depth, width = _shelf(wood, rng)
    if (shelf_spot := plan.against_wall(depth, width)) is not None:
        parts += _placed(shelf_parts, *shelf_spot[:3], new("shelf"))
    table_parts, radius, table_h = _table(wood, rng)
    if (table_xy := plan.place(radius)) is not None:
        parts += _placed(table_parts, *table_xy, rng.uniform(0, math.pi), new("table"))
    for color in [CHAIR_COLORS[i] for i in rng.permutation(len(CHAIR_COLORS))[:cfg.n_chairs]]:
        if (xy := plan.place(0.33)) is not None:
            parts += _placed(_chair(color), *xy, rng.uniform(0, 2 * math.pi), new("chair"))
    if (xy := plan.place(0.2)) is not None:
        parts += _placed(_lamp(), *xy, 0.0, new("lamp"))
    for _ in range(cfg.n_boxes):
        s = rng.uniform(0.1, 0.22)
        if (xy := plan.place(s * math.sqrt(2))) is not None:
            if rng.random() < 0.5:
                look = dict(color=CARDBOARD)
            else:
                a, b = _two_colors(rng)
                look = dict(color=a, color_b=b, texture=CHECKER, period=0.25)
            box = ScenePart(BOX, (0, 0, s), (s, s, s), BOX_, -1, **look)
            parts += _placed([box], *xy, rng.uniform(0, math.pi), new("box"))
    for k in range(cfg.n_balls):
        r = rng.uniform(0.09, 0.15)
        a, b = _two_colors(rng)
        if k == 0 and table_xy is not None:
            spot, z = (table_xy[0], table_xy[1]), table_h + r
        else:
            spot, z = plan.place(r), r
        if spot is not None:
            parts.append(ScenePart(SPHERE, (spot[0], spot[1], z), (r, r, r), BALL, new("ball"), a, b, STRIPES, 0.18,
                                   axis=2))
    walls = rng.permutation(4)
    window_wall = int(walls[0]) if shelf_spot is None or walls[0] != shelf_spot[3] else int(walls[1])
    center, half = _on_wall(window_wall, rng.uniform(-0.8, 0.8), 1.55, 0.5, 0.4, cfg.size)
    parts.append(ScenePart(BOX, center, half, WINDOW, new("window"), (0.75, 0.88, 1.0), emissive=True))
    for wall in [int(w) for w in walls if w != window_wall][:2]:
        a, b = _two_colors(rng)
        center, half = _on_wall(wall, rng.uniform(-1.0, 1.0), rng.uniform(1.3, 1.7), 0.3, 0.22, cfg.size)
        texture = CHECKER if rng.random() < 0.5 else STRIPES
        parts.append(ScenePart(BOX, center, half, PICTURE, new("picture"), a, b, texture, 0.2,
                               axis=1 if wall < 2 else 0))
    return parts, names


def look_at(position: Tensor, target: Tensor) -> Tensor:
    """Camera-to-world ``[V, 4, 4]`` (OpenGL axes, z up in the world) at ``position [V, 3]`` facing ``target [V, 3]``."""
    forward = torch.nn.functional.normalize(target - position, dim=-1)
    world_up = torch.tensor([0.0, 0, 1], dtype=position.dtype).expand_as(forward)
    right = torch.nn.functional.normalize(torch.cross(forward, world_up, dim=-1), dim=-1)
    c2w = torch.eye(4, dtype=position.dtype).repeat(position.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, torch.cross(right, forward, dim=-1), -forward, position
    return c2w


def trajectory(cfg: RoomConfig) -> Tensor:
    """Cameras ``c2w [V, 4, 4]`` (OpenGL axes) on an ellipse around the room centre, looking across the room and
    down, height and yaw varying."""
    theta = torch.arange(cfg.n_views, dtype=torch.float64) * (2 * math.pi / cfg.n_views)
    pos = torch.stack([0.6 * torch.cos(theta), 0.45 * torch.sin(theta), 1.35 + 0.2 * torch.sin(3 * theta)], -1)
    yaw = theta + math.pi + 0.4 * torch.sin(3 * theta)  # across the room, swinging left and right
    pitch = -0.28 + 0.1 * torch.sin(4 * theta + 1)
    forward = torch.stack([pitch.cos() * yaw.cos(), pitch.cos() * yaw.sin(), pitch.sin()], -1)
    return look_at(pos, pos + forward).float()


def overview_cameras(cfg: RoomConfig) -> Tensor:
    """Four cameras ``c2w [4, 4, 4]``, one per corner at 1.2 m, looking at the opposite side."""
    X, Y = cfg.size[0] / 2, cfg.size[1] / 2
    corners = [(sx, sy) for sx in (-1.0, 1.0) for sy in (-1.0, 1.0)]
    position = torch.tensor([[sx * (X - 0.2), sy * (Y - 0.2), 1.2] for sx, sy in corners], dtype=torch.float64)
    target = torch.tensor([[-sx * (X / 2), -sy * (Y / 2), 1.0] for sx, sy in corners], dtype=torch.float64)
    return look_at(position, target).float()


def build_room(cfg: RoomConfig) -> Room:
    """Lay out the room of ``cfg.seed`` and its cameras (no rendering)."""
    if cfg.width < 1 or cfg.height < 1 or cfg.n_views < 2 or not 0 < cfg.fov_deg < 180 or not 0 <= cfg.overview_fov_deg < 180:
        raise ValueError(f"need width, height >= 1, n_views >= 2, 0 < fov_deg < 180 and 0 <= overview_fov_deg < 180, "
                         f"got {cfg}")
    parts, names = build_parts(cfg)
    prims = Primitives.stack(parts)
    classes = {p.instance: p.semantic for p in parts}
    instance_classes = [classes.get(i, 0) for i in range(len(names))]
    X, Y, Z = cfg.size[0] / 2, cfg.size[1] / 2, cfg.size[2]
    noise = torch.rand(12, 12, 12, generator=torch.Generator().manual_seed(cfg.seed))
    world = World(prims, light_center=torch.tensor([0.0, 0.0, Z - 0.15]), light_size=0.6,
                  light_samples=cfg.light_samples, ambient=cfg.ambient, noise=noise,
                  noise_box=torch.tensor([[-X, -Y, 0.0], [X, Y, Z]]),
                  occluders=prims.select(prims.instance >= 6))  # instances 0..5: floor, ceiling, walls
    c2w, fovs = trajectory(cfg), [cfg.fov_deg] * cfg.n_views
    if cfg.overview_fov_deg > 0:  # four wide training cameras
        c2w, fovs = torch.cat([c2w, overview_cameras(cfg)]), fovs + [cfg.overview_fov_deg] * 4
    focal = [0.5 * cfg.width / math.tan(math.radians(fov) / 2) for fov in fovs]
    intrinsics = torch.tensor([[f, f, cfg.width / 2, cfg.height / 2] for f in focal])
    aabb = torch.tensor([[-X, -Y, 0.0], [X, Y, Z]]) + torch.tensor([[-0.05], [0.05]])
    far = math.sqrt((2 * X) ** 2 + (2 * Y) ** 2 + Z**2) + 0.1
    return Room(cfg, world, c2w, intrinsics, instance_classes, names, aabb, near=0.05, far=far)


def room_views(room: Room, index: list[int] | None = None, progress: bool = False) -> Views:
    """Render the room's trajectory cameras (all, or those at ``index``) into :class:`Views` with every label."""
    index = list(range(room.c2w.shape[0])) if index is None else index
    out = render_views(room.world, room.c2w[index], room.intrinsics[index], room.config.height, room.config.width,
                       progress=progress)
    return Views(images=out["images"], c2w=room.c2w[index], intrinsics=room.intrinsics[index],
                 names=[f"frame_{i:04d}" for i in index], depth=out["depth"], semantic=out["semantic"],
                 instance=out["instance"])


def generate_room(cfg: RoomConfig | None = None, progress: bool = False) -> Scene:
    """Build and render a procedural room: train/test :class:`Scene` with RGB, depth, class and instance maps."""
    room = build_room(cfg or RoomConfig())
    views = room_views(room, progress=progress)
    train, test = split_indices(room.config.n_views, room.config.test_every)
    train += list(range(room.config.n_views, len(views)))  # overview cameras always train
    return Scene(train=views.subset(train), test=views.subset(test), class_names=list(CLASS_NAMES),
                 class_colors=torch.tensor(CLASS_COLORS, dtype=torch.uint8), aabb=room.aabb,
                 near=room.near, far=room.far)

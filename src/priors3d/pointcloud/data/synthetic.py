"""The built-in data set: upright (z-up) objects assembled from primitives, with part labels.

Fifteen categories, 48 parts with global ids (like ShapeNetPart's 16 categories / 50 parts). Each
category varies its proportions, part counts, thicknesses and optional parts, and several share
part kinds (legs and seats, cylinders and cones, rings) so that classes are not told apart by a
single feature. Shapes are deterministic from ``(seed, split, category, index)``; the test split
draws from a different stream than the train split. Generated point clouds are cached as ``.npz``
files keyed by the configuration, so only the first use pays for generation.

Joints overlap (a leg reaches into the seat); the sampler keeps only the union's outer surface.
"""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from priors3d.pointcloud.data.base import PointCloudDataset, cache_key, cached_arrays, global_part_ids
from priors3d.pointcloud.data.primitives import (
    Box,
    Ellipsoid,
    Frustum,
    Part,
    Shape,
    Torus,
    as_numpy_rng,
    frame_from_z,
    rotation_about,
)

# Bump when the generators change so that stale caches are not reused.
VERSION = 2

SPLITS = {"train": 0, "test": 1}


# --- placing primitives -------------------------------------------------------------------------

def box(part: int, center, size, rotation=None) -> Part:
    """A box of full ``size`` centred at ``center``."""
    return Part(Box(tuple(float(s) / 2 for s in size)), part,
                np.eye(3) if rotation is None else rotation, np.asarray(center, dtype=float))


def rod(part: int, start, end, r0: float, r1: float | None = None) -> Part:
    """A cylinder (or frustum from radius ``r0`` at ``start`` to ``r1`` at ``end``) between two points."""
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    axis = end - start
    length = float(np.linalg.norm(axis))
    return Part(Frustum(r0, r0 if r1 is None else r1, length / 2), part, frame_from_z(axis), (start + end) / 2)


def ellipsoid(part: int, center, radii, rotation=None) -> Part:
    return Part(Ellipsoid(tuple(float(r) for r in radii)), part,
                np.eye(3) if rotation is None else rotation, np.asarray(center, dtype=float))


def ring(part: int, center, major: float, minor: float, axis=(0, 0, 1)) -> Part:
    """A torus around ``axis`` through ``center``."""
    return Part(Torus(major, minor), part, frame_from_z(axis), np.asarray(center, dtype=float))


def placed(parts: list[Part], rotation: np.ndarray, translation) -> list[Part]:
    """``parts`` moved by ``p @ rotation + translation``."""
    t = np.asarray(translation, dtype=float)
    return [Part(p.primitive, p.part, p.rotation @ rotation, p.translation @ rotation + t) for p in parts]


def _corners(a: float, b: float):
    """The four ``(±a, ±b)`` corners."""
    return [(sx * a, sy * b) for sx in (-1, 1) for sy in (-1, 1)]


# --- categories ---------------------------------------------------------------------------------
# A generator takes a NumPy generator, its ``uniform`` method (``u``, the most frequent draw) and one global part
# id per part of its category, each parameter named after its part (CATEGORIES reads the part names, in label
# order, from these signatures); units are roughly metres.

def _chair(rng, u, seat, back, leg, arm):
    w, d, t, hs = u(0.40, 0.60), u(0.38, 0.58), u(0.03, 0.08), u(0.38, 0.50)
    parts = [box(seat, (0, 0, hs), (w, d, t))]
    style = rng.choice(["square", "round", "pedestal"], p=[0.45, 0.3, 0.25])
    if style == "pedestal":
        parts.append(rod(leg, (0, 0, 0.03), (0, 0, hs), u(0.02, 0.04)))
        arms, length = int(rng.integers(4, 6)), u(0.2, 0.3)
        for k in range(arms):
            a = 2 * np.pi * k / arms
            parts.append(box(leg, (length / 2 * np.cos(a), length / 2 * np.sin(a), 0.02), (length, 0.04, 0.04),
                             rotation_about("z", a)))
    else:
        lt, inset, splay = u(0.025, 0.05), u(0.01, 0.05), u(0.0, 0.05) if style == "round" else 0.0
        for x, y in _corners(w / 2 - lt / 2 - inset, d / 2 - lt / 2 - inset):
            if style == "square":
                parts.append(box(leg, (x, y, hs / 2), (lt, lt, hs)))
            else:
                out = np.array([x, y]) / np.hypot(x, y) * splay
                parts.append(rod(leg, (x + out[0], y + out[1], 0), (x, y, hs), lt / 2))
    hb, bt, tilt = u(0.25, 0.55), u(0.025, 0.06), u(0.0, 0.3)
    if rng.random() < 0.6:
        local = [box(back, (0, 0, hb / 2), (w * u(0.8, 0.97), bt, hb))]
    else:
        slats, rail = int(rng.integers(2, 6)), u(0.05, 0.12)
        bw = w * u(0.8, 0.97)
        local = [box(back, (0, 0, hb - rail / 2), (bw, bt, rail))]
        for x in np.linspace(-bw / 2 + bt / 2, bw / 2 - bt / 2, slats):
            local.append(box(back, (x, 0, (hb - rail / 2) / 2), (bt * 0.8, bt * 0.8, hb - rail / 2)))
    parts += placed(local, rotation_about("x", -tilt), (0, d / 2 - bt / 2 - 0.005, hs))
    if rng.random() < 0.35:
        aw, ah, at = u(0.03, 0.06), u(0.15, 0.25), u(0.03, 0.05)
        for sx in (-1, 1):
            x = sx * (w / 2 - aw / 2 - 0.005)
            parts.append(box(arm, (x, -0.05 * d, hs + ah), (aw, d * u(0.7, 0.9), at)))
            parts.append(box(arm, (x, -0.35 * d, hs + ah / 2), (aw * 0.8, aw * 0.8, ah)))
    return parts


def _table(rng, u, top, leg, shelf):
    h, t = u(0.4, 1.0), u(0.03, 0.08)
    if rng.random() < 0.3:
        r = u(0.3, 0.65)
        parts = [rod(top, (0, 0, h - t), (0, 0, h), r)]
        half_w = half_d = r * 0.7 / math.sqrt(2)
        style = rng.choice(["four", "pedestal"])
    else:
        w = u(0.8, 1.6)
        d = w * u(0.45, 0.9)
        parts = [box(top, (0, 0, h - t / 2), (w, d, t))]
        half_w, half_d = w / 2, d / 2
        style = rng.choice(["four", "pedestal", "trestle"], p=[0.6, 0.2, 0.2])
    z = h - t / 2
    if style == "four":
        lt, inset = u(0.03, 0.08), u(0.01, 0.08)
        x, y = half_w - lt / 2 - inset, half_d - lt / 2 - inset
        round_legs = rng.random() < 0.4
        for cx, cy in _corners(x, y):
            parts.append(rod(leg, (cx, cy, 0), (cx, cy, z), lt / 2) if round_legs
                         else box(leg, (cx, cy, z / 2), (lt, lt, z)))
        if rng.random() < 0.3:
            zs = u(0.1, 0.3)
            parts.append(box(shelf, (0, 0, zs), (2 * x, 2 * y, t * u(0.5, 1.0))))
    elif style == "pedestal":
        parts.append(rod(leg, (0, 0, 0.02), (0, 0, z), u(0.04, 0.1)))
        parts.append(rod(leg, (0, 0, 0), (0, 0, u(0.03, 0.05)), u(0.2, 0.35)))
    else:
        pt, foot = u(0.03, 0.06), u(0.03, 0.06)
        for sx in (-1, 1):
            x = sx * (half_w - u(0.08, 0.2))
            parts.append(box(leg, (x, 0, z / 2), (pt, 1.5 * half_d, z)))
            parts.append(box(leg, (x, 0, foot / 2), (3 * pt, 1.8 * half_d, foot)))
        if rng.random() < 0.5:
            parts.append(box(leg, (0, 0, z * u(0.2, 0.5)), (2 * half_w - 0.3, pt, pt * 2)))
    return parts


def _stool(rng, u, seat, leg, footrest):
    h, r, t = u(0.35, 0.85), u(0.14, 0.26), u(0.03, 0.07)
    if rng.random() < 0.7:
        parts = [rod(seat, (0, 0, h - t), (0, 0, h), r)]
    else:
        parts = [box(seat, (0, 0, h - t / 2), (1.7 * r, 1.7 * r, t))]
    legs, splay, lr = int(rng.choice([3, 4])), u(0.0, 0.1), u(0.012, 0.025)
    top_radius, top_z, phase = r * u(0.5, 0.75), h - t / 2, rng.uniform(0, np.pi)
    for k in range(legs):
        a = phase + 2 * np.pi * k / legs
        c, s = np.cos(a), np.sin(a)
        parts.append(rod(leg, ((top_radius + splay) * c, (top_radius + splay) * s, 0),
                         (top_radius * c, top_radius * s, top_z), lr))
    if rng.random() < 0.5:
        zf = top_z * u(0.25, 0.5)
        parts.append(ring(footrest, (0, 0, zf), top_radius + splay * (1 - zf / top_z), lr * u(0.5, 0.9)))
    return parts


def _lamp(rng, u, base, pole, shade):
    rb, hb, hp = u(0.08, 0.18), u(0.02, 0.06), u(0.2, 0.9)
    if rng.random() < 0.7:
        parts = [rod(base, (0, 0, 0), (0, 0, hb), rb)]
    else:
        parts = [box(base, (0, 0, hb / 2), (2 * rb, 2 * rb * u(0.6, 1.0), hb))]
    top = np.array([0, 0, hb + hp])
    parts.append(rod(pole, (0, 0, hb / 2), top, u(0.008, 0.02)))
    # Shades open downwards (wide end below) except for some uplighters on straight poles.
    down = np.array([0.0, 0, -1])
    if rng.random() < 0.35:
        a = u(0.4, 1.2)
        end = top + u(0.15, 0.35) * np.array([np.sin(a), 0, np.cos(a)])
        parts.append(rod(pole, top, end, u(0.008, 0.015)))
        top, down = end, np.array([u(0.0, 0.5), 0, -1])
        down /= np.linalg.norm(down)
    elif rng.random() < 0.3:
        down = -down
    if rng.random() < 0.75:
        r0, hs = u(0.08, 0.22), u(0.1, 0.25)
        parts.append(rod(shade, top + down * hs * 0.6, top - down * hs * 0.4, r0, r0 * u(0.3, 0.8)))
    else:
        rg = u(0.08, 0.18)
        parts.append(ellipsoid(shade, top - down * rg * 0.7, (rg, rg, rg * u(0.8, 1.3))))
    return parts


def _bottle(rng, u, body, neck, cap):
    rb, hbody = u(0.05, 0.16), u(0.15, 0.5)
    r_top = rb * (u(0.75, 0.95) if rng.random() < 0.3 else 1.0)
    rn, hsh, hn = u(0.02, 0.045), u(0.02, 0.15), u(0.04, 0.15)
    parts = [rod(body, (0, 0, 0), (0, 0, hbody), rb, r_top),
             rod(body, (0, 0, hbody - 0.01), (0, 0, hbody + hsh), r_top, rn * 1.02)]
    neck_top = hbody + hsh + hn
    parts.append(rod(neck, (0, 0, hbody + hsh - 0.01), (0, 0, neck_top), rn))
    if rng.random() < 0.8:
        hc = hn * u(0.2, 0.6)
        parts.append(rod(cap, (0, 0, neck_top - hc), (0, 0, neck_top + 0.005), rn * u(1.05, 1.3)))
    return parts


def _mug(rng, u, body, handle):
    r, h = u(0.07, 0.13), u(0.12, 0.28)
    r_bottom = r * (u(0.8, 1.0) if rng.random() < 0.4 else 1.0)
    major = h * u(0.22, 0.38)
    minor = min(u(0.008, 0.02), major * 0.5)
    zc = h / 2 + u(-0.05, 0.05) * h
    return [rod(body, (0, 0, 0), (0, 0, h), r_bottom, r),
            ring(handle, (r_bottom + major * u(0.15, 0.5), 0, zc), major, minor, axis=(0, 1, 0))]


def _rocket(rng, u, body, nose, fin):
    r, length, hn = u(0.05, 0.14), u(0.4, 1.0), u(0.1, 0.3)
    parts = [rod(body, (0, 0, 0), (0, 0, length), r)]
    if rng.random() < 0.7:
        parts.append(rod(nose, (0, 0, length - 0.01), (0, 0, length + hn), r * 0.999, 0.0))
    else:
        parts.append(ellipsoid(nose, (0, 0, length), (r * 0.999, r * 0.999, hn)))
    fins, phase = int(rng.choice([3, 4])), rng.uniform(0, np.pi)
    fl, fh, ft, lift = u(0.06, 0.15), u(0.1, 0.25), u(0.008, 0.02), u(0.0, 0.05)
    for k in range(fins):
        a = phase + 2 * np.pi * k / fins
        parts.append(box(fin, ((r + fl / 2 - 0.01) * np.cos(a), (r + fl / 2 - 0.01) * np.sin(a), lift + fh / 2),
                         (fl, ft, fh), rotation_about("z", a)))
    if rng.random() < 0.3:
        rb, lb = r * u(0.3, 0.5), length * u(0.4, 0.7)
        for k in range(fins):
            a = phase + 2 * np.pi * (k + 0.5) / fins
            c, s = (r + 0.8 * rb) * np.cos(a), (r + 0.8 * rb) * np.sin(a)
            parts.append(rod(body, (c, s, 0), (c, s, lb), rb))
            parts.append(rod(body, (c, s, lb - 0.005), (c, s, lb + 2 * rb), rb * 0.999, 0.0))
    return parts


def _wing(part, root, span, chord, thickness, sweep):
    """Two half-wings from ``root`` along ±y, swept back by ``sweep`` radians."""
    return [box(part, np.asarray(root) + np.array([-np.sin(sweep), side * np.cos(sweep), 0]) * span / 4,
                (chord, span / 2, thickness), rotation_about("z", side * sweep)) for side in (-1, 1)]


def _airplane(rng, u, body, wing, tail, engine):
    length = u(0.8, 1.2)
    rf = length * u(0.035, 0.06)
    front, back = 0.3 * length, -0.3 * length
    parts = [rod(body, (back, 0, 0), (front, 0, 0), rf),
             ellipsoid(body, (front, 0, 0), (length * u(0.08, 0.18), rf, rf)),
             rod(body, (back + 0.01, 0, 0), (-0.5 * length, 0, rf * u(0.0, 0.6)), rf * 0.999, rf * u(0.2, 0.5))]
    span, chord, sweep = length * u(0.8, 1.3), length * u(0.1, 0.22), u(0.0, 0.6)
    wt, xw, zw = rf * u(0.2, 0.45), length * u(-0.05, 0.12), rf * u(-0.5, 0.5)
    parts += _wing(wing, (xw, 0, zw), span, chord, wt, sweep)
    fin_h, fin_c, xt = rf * u(2.0, 4.0), chord * u(0.5, 0.9), -0.42 * length
    fin_tilt = u(0.0, 0.5)
    parts.append(box(tail, (xt - np.sin(fin_tilt) * fin_h / 2, 0, rf * 0.5 + fin_h / 2),
                     (fin_c, wt * 0.8, fin_h + rf), rotation_about("y", -fin_tilt)))
    stab_z = rf * 0.5 + fin_h * 0.9 if rng.random() < 0.2 else rf * 0.3
    parts += _wing(tail, (xt - np.sin(fin_tilt) * (stab_z - rf * 0.5), 0, stab_z), span * u(0.25, 0.4),
                   chord * u(0.5, 0.8), wt * 0.8, sweep)
    count = int(rng.choice([0, 2, 4], p=[0.2, 0.6, 0.2]))
    re = rf * u(0.35, 0.6)
    el = chord * u(0.8, 1.4)
    offsets = [u(0.12, 0.2), u(0.28, 0.38)][: count // 2]
    for frac in offsets:
        for side in (-1, 1):
            y = side * frac * span
            x = xw - np.tan(sweep) * abs(y) + chord * 0.2
            z = zw - re * 0.9
            parts.append(rod(engine, (x - el / 2, y, z), (x + el / 2, y, z), re))
    return parts


def _car(rng, u, body, cabin, wheel):
    length = u(0.8, 1.2)
    width, height, rw = length * u(0.38, 0.5), length * u(0.12, 0.2), length * u(0.06, 0.1)
    zb = rw * u(0.5, 0.9)
    parts = [box(body, (0, 0, zb + height / 2), (length, width, height))]
    lc, hc = length * u(0.3, 0.6), length * u(0.1, 0.2)
    xc = length * u(-0.2, 0.15)
    parts.append(box(cabin, (xc, 0, zb + height + hc / 2 - 0.01), (lc, width * u(0.8, 0.95), hc)))
    ww = width * u(0.12, 0.2)
    axles = [-(length / 2 - rw * u(1.1, 1.6)), length / 2 - rw * u(1.1, 1.6)]
    if rng.random() < 0.15:
        axles.insert(1, axles[0] + 2.3 * rw)
    for x in axles:
        for side in (-1, 1):
            y = side * (width / 2 - ww * u(0.1, 0.4))
            parts.append(rod(wheel, (x, y - ww / 2, rw), (x, y + ww / 2, rw), rw))
    return parts


def _guitar(rng, u, body, neck, head):
    a1, tb = u(0.17, 0.22), u(0.04, 0.06)
    c1 = a1 * u(0.9, 1.15)
    if rng.random() < 0.6:
        a2 = a1 * u(0.7, 0.85)
        c2 = a2 * u(0.9, 1.1)
        z2 = c1 + (c1 + c2) * u(0.55, 0.75)
        parts = [ellipsoid(body, (0, 0, c1), (a1, tb, c1)), ellipsoid(body, (0, 0, z2), (a2, tb, c2))]
        top = z2 + c2
    else:
        tb *= u(0.5, 0.8)
        parts = [ellipsoid(body, (0, 0, c1), (a1, tb, c1 * u(1.0, 1.3)))]
        horn = a1 * u(0.3, 0.5)
        parts.append(ellipsoid(body, (-a1 * 0.45, 0, 1.9 * c1), (horn, tb * 0.99, horn * 1.6)))
        top = 2.1 * c1
    nw, nt, nl = u(0.04, 0.06), u(0.02, 0.03), u(0.35, 0.5)
    start = top - 0.05
    parts.append(box(neck, (0, 0, start + nl / 2), (nw, nt, nl)))
    hl, tilt = u(0.12, 0.2), u(0.0, 0.25)
    local = [box(head, (0, 0, hl / 2), (nw * u(1.2, 1.8), nt * u(0.6, 0.95), hl))]
    parts += placed(local, rotation_about("x", tilt), (0, 0, start + nl - 0.02))
    return parts


def _bed(rng, u, frame, mattress, board, pillow):
    length, width, hf, lift = u(1.8, 2.2), u(0.9, 1.9), u(0.15, 0.35), u(0.05, 0.2)
    lt = u(0.05, 0.1)
    parts = [box(frame, (x, y, (lift + 0.01) / 2), (lt, lt, lift + 0.01))
             for x, y in _corners(length / 2 - lt / 2 - 0.02, width / 2 - lt / 2 - 0.02)]
    parts.append(box(frame, (0, 0, lift + hf / 2), (length, width, hf)))
    hm = u(0.1, 0.25)
    top = lift + hf + hm - 0.01
    parts.append(box(mattress, (0, 0, top - hm / 2), (length * u(0.92, 0.99), width * u(0.92, 0.99), hm)))
    tb = u(0.04, 0.1)
    bw = width * u(1.0, 1.05) + 0.02
    head_top = top + u(0.2, 0.6)
    parts.append(box(board, (-length / 2 - 0.01 + tb / 2, 0, head_top / 2), (tb, bw, head_top)))
    if rng.random() < 0.4:
        foot_top = lift + hf + u(0.05, 0.35)
        parts.append(box(board, (length / 2 + 0.01 - tb / 2, 0, foot_top / 2), (tb, bw, foot_top)))
    count = int(rng.choice([0, 1, 2], p=[0.2, 0.4, 0.4]))
    for k in range(count):
        rx, rz = u(0.12, 0.2), u(0.04, 0.08)
        ry = width / (2 * count) * u(0.7, 0.9)
        y = (k - (count - 1) / 2) * width / count
        parts.append(ellipsoid(pillow, (-length / 2 + tb + rx + 0.05, y, top + rz * 0.6), (rx, ry, rz)))
    return parts


def _shelf(rng, u, side, board, back):
    height, width, depth, ts = u(0.5, 2.0), u(0.5, 1.5), u(0.25, 0.45), u(0.015, 0.04)
    parts = [box(side, (sx * (width / 2 - ts / 2), 0, height / 2), (ts, depth, height)) for sx in (-1, 1)]
    count, tb = int(rng.integers(2, 7)), ts * u(0.8, 1.5)
    lift = u(0.0, 0.1)
    levels = np.linspace(lift + tb / 2, height - tb / 2 - 0.01, count)
    gap = (levels[1] - levels[0]) if count > 1 else 0
    levels[1:-1] += rng.uniform(-0.15, 0.15, count - 2) * gap
    bd = depth * u(0.85, 0.97)
    parts += [box(board, (0, -(depth - bd) / 2, z), (width - 2 * ts + 0.01, bd, tb)) for z in levels]
    if rng.random() < 0.5:
        tk = u(0.005, 0.015)
        parts.append(box(back, (0, depth / 2 - tk / 2 - 0.003, height / 2), (width - 0.005, tk, height - 0.005)))
    else:
        rail = u(0.04, 0.1)
        parts.append(box(back, (0, depth / 2 - ts, height - rail / 2 - 0.02), (width - ts, ts, rail)))
    return parts


def _bench(rng, u, seat, leg, back):
    length, depth, t, h = u(0.9, 1.8), u(0.3, 0.5), u(0.03, 0.08), u(0.38, 0.5)
    if rng.random() < 0.6:
        parts = [box(seat, (0, 0, h - t / 2), (length, depth, t))]
    else:
        slats = int(rng.integers(3, 6))
        width = depth / slats * u(0.6, 0.85)
        parts = [box(seat, (0, y, h - t / 2), (length, width, t))
                 for y in np.linspace(-depth / 2 + width / 2, depth / 2 - width / 2, slats)]
        parts.append(box(seat, (0, 0, h - t - 0.02), (length * 0.9, depth * 0.9, 0.05)))  # the slats' rail
    z = h - t / 2
    if rng.random() < 0.6:
        lt, inset = u(0.03, 0.07), u(0.02, 0.15)
        for x, y in _corners(length / 2 - lt / 2 - inset, depth / 2 - lt / 2 - 0.01):
            parts.append(box(leg, (x, y, z / 2), (lt, lt, z)))
    else:
        pt = u(0.03, 0.07)
        for sx in (-1, 1):
            parts.append(box(leg, (sx * (length / 2 - u(0.05, 0.2)), 0, z / 2), (pt, depth * u(0.8, 0.95), z)))
    if rng.random() < 0.5:
        hb, bt, tilt = u(0.2, 0.45), u(0.03, 0.06), u(0.0, 0.3)
        local = [box(back, (0, 0, hb - 0.06), (length * u(0.9, 1.0), bt, 0.12))]
        for x in np.linspace(-length / 2 + 0.05, length / 2 - 0.05, int(rng.integers(2, 5))):
            local.append(box(back, (x, 0, hb / 2), (bt, bt, hb)))
        parts += placed(local, rotation_about("x", -tilt), (0, depth / 2 - bt / 2 - 0.01, h - t / 2))
    return parts


def _sofa(rng, u, base, cushion, back, arm):
    length, depth, hb, lift = u(1.2, 2.4), u(0.7, 1.0), u(0.15, 0.3), u(0.0, 0.15)
    parts = []
    if lift > 0.03:
        lt = u(0.04, 0.08)
        parts += [box(base, (x, y, (lift + 0.01) / 2), (lt, lt, lift + 0.01))
                  for x, y in _corners(length / 2 - 0.1, depth / 2 - 0.1)]
    parts.append(box(base, (0, 0, lift + hb / 2), (length, depth, hb)))
    arms = rng.random() < 0.85
    aw = u(0.1, 0.25) if arms else 0.0
    back_depth = u(0.12, 0.25)
    count, hc = int(rng.integers(1, 4)), u(0.1, 0.2)
    inner = length - 2 * aw
    for k in range(count):
        x = -inner / 2 + (k + 0.5) * inner / count
        parts.append(box(cushion, (x, -back_depth / 2, lift + hb + hc / 2 - 0.01),
                         (inner / count * 0.97, depth - back_depth, hc)))
    hback = u(0.3, 0.6)
    parts.append(box(back, (0, depth / 2 - back_depth / 2, lift + hb + hback / 2 - 0.01),
                     (length, back_depth, hback), rotation_about("x", -u(0.0, 0.15))))
    if arms:
        ha = u(0.15, 0.35)
        for sx in (-1, 1):
            parts.append(box(arm, (sx * (length / 2 - aw / 2), 0, lift + (hb + ha) / 2), (aw, depth, hb + ha)))
    return parts


def _vase(rng, u, body, neck, handle):
    r0, rmax, h = u(0.04, 0.1), u(0.08, 0.18), u(0.2, 0.5)
    rn, waist = rmax * u(0.25, 0.6), h * u(0.3, 0.7)
    if rng.random() < 0.4:
        parts = [ellipsoid(body, (0, 0, h / 2), (rmax, rmax, h / 2)),
                 rod(body, (0, 0, 0), (0, 0, h * 0.1), r0)]
    else:
        parts = [rod(body, (0, 0, 0), (0, 0, waist), r0, rmax),
                 rod(body, (0, 0, waist - 0.005), (0, 0, h), rmax, rn)]
    hn = u(0.04, 0.2)
    parts.append(rod(neck, (0, 0, h - 0.01), (0, 0, h + hn), rn * 0.98, rn * u(0.9, 1.6)))
    if rng.random() < 0.3:
        major = min(hn * u(0.4, 0.6), rmax * 0.8)
        for sx in (-1, 1):
            parts.append(ring(handle, (sx * rn * 1.1, 0, h + hn * 0.3), major, min(u(0.006, 0.015), major / 2),
                              axis=(0, 1, 0)))
    return parts


GENERATORS = {
    "airplane": _airplane, "bed": _bed, "bench": _bench, "bottle": _bottle, "car": _car, "chair": _chair,
    "guitar": _guitar, "lamp": _lamp, "mug": _mug, "rocket": _rocket, "shelf": _shelf, "sofa": _sofa,
    "stool": _stool, "table": _table, "vase": _vase,
}
# The categories in label order, each with its part names: its generator's parameters after ``rng`` and ``u``.
CATEGORIES: dict[str, tuple[str, ...]] = {name: tuple(inspect.signature(make).parameters)[2:]
                                          for name, make in GENERATORS.items()}
SEG_CLASSES: dict[str, list[int]] = global_part_ids({name: len(parts) for name, parts in CATEGORIES.items()})
PART_NAMES: list[str] = [f"{c}/{p}" for c, parts in CATEGORIES.items() for p in parts]


def make_shape(category: str, rng: np.random.Generator | int, normalize: bool = True) -> Shape:
    """One random shape of ``category``, normalised into the unit sphere (from 2048 surface samples)."""
    if category not in GENERATORS:
        raise ValueError(f"unknown category {category!r}; expected one of {list(GENERATORS)}")
    rng = as_numpy_rng(rng)
    shape = Shape(tuple(GENERATORS[category](rng, rng.uniform, *SEG_CLASSES[category])))
    return shape.normalized(rng) if normalize else shape


def sample_item(category: str, seed: int, split: str, index: int, n_points: int):
    """Item ``index`` of ``category`` in the data set: the shape normalised by its own ``n_points`` samples, as the
    public sets are. Geometry and point sampling draw from independent generators of ``(seed, split, category,
    index)``.

    Returns the normalised :class:`Shape`, points and normals ``[n_points, 3]`` and parts ``[n_points]``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    sequence = np.random.SeedSequence([seed, SPLITS[split], list(CATEGORIES).index(category), index])
    geometry, sampling = (np.random.default_rng(s) for s in sequence.spawn(2))
    shape = make_shape(category, geometry, normalize=False)
    raw, normals, parts = shape.sample_raw(n_points, sampling)
    shape = shape.normalized_by(raw)
    return shape, (raw - shape.center) / shape.scale, normals, parts


class SyntheticShapes(PointCloudDataset):
    """The procedural data set, z-up, with category labels, part labels and normals.

    ``per_class`` shapes of each category (default 200 for train, 50 for test), each sampled with
    ``n_points`` surface points. ``root`` is the cache folder (default ``$PRIORS3D_CACHE`` or ``~/.cache/priors3d``).
    ``shape(i)`` rebuilds the exact solid behind item ``i`` for occupancy queries.
    """

    name = "synthetic"
    up_axis = "z"
    seg_classes = SEG_CLASSES

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train", n_points: int = 1024,
                 per_class: int | None = None, seed: int = 0, normals: bool = False,
                 categories: list[str] | None = None, sample: str = "first", progress: bool = True):
        super().__init__(split, n_points, normals, sample, seed)
        if split not in SPLITS:
            raise ValueError(f"synthetic split must be one of {list(SPLITS)}, got {split!r}")
        self.class_names = list(categories or CATEGORIES)
        unknown = sorted(set(self.class_names) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {unknown}; expected some of {list(CATEGORIES)}")
        self.seg_classes = {c: SEG_CLASSES[c] for c in self.class_names}
        self.per_class = per_class or (200 if split == "train" else 50)
        default_root = os.environ.get("PRIORS3D_CACHE", Path.home() / ".cache" / "priors3d")
        self.root = Path(root if root is not None else default_root)
        self.data = cached_arrays(self.cache_path, lambda: generate(self.class_names, self.split, self.per_class,
                                                                    self.n_points, self.seed, progress))

    @property
    def config(self) -> dict:
        return {"version": VERSION, "split": self.split, "n_points": self.n_points, "per_class": self.per_class,
                "seed": self.seed, "categories": self.class_names}

    @property
    def cache_path(self) -> Path:
        return self.root / "synthetic" / f"{self.split}-{self.n_points}-{cache_key(self.config)}.npz"

    def __len__(self) -> int:
        return len(self.data["label"])

    def _load(self, index):
        return {key: self.data[key][index] for key in ("points", "normals", "label", "parts")}

    def shape(self, index: int) -> Shape:
        """The normalised solid whose surface item ``index`` samples (``contains`` gives occupancy)."""
        class_index, i = divmod(index, self.per_class)
        return sample_item(self.class_names[class_index], self.seed, self.split, i, self.n_points)[0]


def generate(categories: list[str], split: str, per_class: int, n_points: int, seed: int,
             progress: bool = True) -> dict[str, np.ndarray]:
    """Sample every shape: points/normals ``[M, n_points, 3]`` float32, label ``[M]``, parts ``[M, n_points]``.

    Items are ordered by category, then index; labels index ``categories``.
    """
    m = len(categories) * per_class
    data = {"points": np.empty((m, n_points, 3), np.float32), "normals": np.empty((m, n_points, 3), np.float32),
            "label": np.repeat(np.arange(len(categories)), per_class).astype(np.int64),
            "parts": np.empty((m, n_points), np.int16)}
    jobs = [(category, i) for category in categories for i in range(per_class)]
    for k, (category, i) in enumerate(tqdm(jobs, desc=f"synthetic {split}", disable=not progress, leave=False)):
        _, data["points"][k], data["normals"][k], data["parts"][k] = sample_item(category, seed, split, i, n_points)
    return data

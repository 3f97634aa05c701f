"""Procedural indoor rooms with exact ground truth (RGB, depth, class and instance maps)."""

from priors3d.fields.scenes.raycast import World, render_views
from priors3d.fields.scenes.room import (CLASS_COLORS, CLASS_NAMES, Room, RoomConfig, build_room, generate_room,
                                        room_views)

__all__ = ["CLASS_COLORS", "CLASS_NAMES", "Room", "RoomConfig", "World", "build_room",
           "generate_room", "render_views", "room_views"]

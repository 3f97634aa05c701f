"""Procedural scenes with exact ground truth (RGB, depth, class and instance maps): indoor rooms, and an object
captured in the NeRF-synthetic (Blender) layout."""

from priors3d.fields.scenes.capture import CaptureConfig, write_capture
from priors3d.fields.scenes.object import ObjectConfig, generate_object, write_blender
from priors3d.fields.scenes.raycast import World, render_views
from priors3d.fields.scenes.room import (CLASS_COLORS, CLASS_NAMES, Room, RoomConfig, build_room, generate_room,
                                        room_views)

__all__ = ["CLASS_COLORS", "CLASS_NAMES", "CaptureConfig", "ObjectConfig", "Room", "RoomConfig", "World", "build_room",
           "generate_object", "generate_room", "render_views", "room_views", "write_blender", "write_capture"]

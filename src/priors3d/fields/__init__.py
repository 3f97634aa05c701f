"""Neural fields on posed views: views and scene folders, rays, a CPU NeRF and 3D Gaussians, their
renderers, and fitting them to a scene (through :mod:`priors3d.engine`)."""

from .fit import FitConfig, fit_nerf, load_field
from .cameras import distort, undistort, undistort_image, undistorted_intrinsics
from .formats import (SceneOptions, fitted_scene, load_nerfstudio, load_replica, load_scene, open_scene, read_scene,
                      write_nerfstudio)
from .gaussians import GaussianField
from .nerf import NeRF, NeRFConfig, field_from_state, field_state, positional_encoding
from .rays import camera_rays, inward_box, project_points, ray_aabb, ray_bounds, scene_aabb, views_rays
from .render import FieldSetup, render_nerf_views, render_rays
from .splat import render_gaussians
from .splat_fit import SplatFitConfig, SplatSetup, fit_splats, load_splats, render_splat_views
from .views import Scene, Views

__all__ = [
    "FieldSetup", "FitConfig", "GaussianField", "NeRF", "NeRFConfig", "Scene", "SceneOptions", "SplatFitConfig",
    "SplatSetup", "Views", "camera_rays", "distort", "field_from_state", "field_state", "fit_nerf", "fit_splats",
    "fitted_scene", "inward_box", "load_field", "load_nerfstudio", "load_replica", "load_scene", "load_splats",
    "open_scene", "positional_encoding", "project_points", "ray_aabb", "ray_bounds", "read_scene",
    "render_gaussians", "render_nerf_views", "render_rays", "render_splat_views", "scene_aabb", "undistort",
    "undistort_image", "undistorted_intrinsics", "views_rays", "write_nerfstudio",
]

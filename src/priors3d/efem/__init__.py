"""EFEM (Lei et al., CVPR 2023): SIM(3)-equivariant shape priors trained on single objects segment every
instance of their category in a scene by expectation-maximisation, without scene labels."""

from .data import ScanPool, object_scans, sdf_queries
from .em import EMConfig, Segmentation, merge_duplicates, point_normals, segment
from .evaluation import THRESHOLDS, average_precision, dbscan_instances, instance_ap
from .pictures import masks_to_labels, mesh_picture, segmentation_picture
from .prior import Code, PointNetEncoder, SDFDecoder, ShapePrior, VNEncoder, normalise
from .protocol import em_method, evaluate_layouts, scene_seed
from .scan import pinhole_rays, sphere_trace, view_eyes
from .scenes import LAYOUTS, Instance, TabletopScene, SceneConfig, make_scene
from .shapes import (CATEGORIES, PARAMETERS, object_sdf, sample_params, sdf_box, sdf_cylinder, sdf_torus,
                     surface_points)
from .train import EFEMTrainConfig, PriorTrainer, build_prior, evaluate_prior, load_prior, prior_mesh, train_prior

__all__ = [
    "CATEGORIES", "Code", "EFEMTrainConfig", "EMConfig", "Instance", "LAYOUTS", "PARAMETERS", "PointNetEncoder",
    "PriorTrainer", "ScanPool", "SDFDecoder", "SceneConfig", "Segmentation", "ShapePrior", "THRESHOLDS",
    "TabletopScene", "VNEncoder", "average_precision", "build_prior", "dbscan_instances", "em_method",
    "evaluate_layouts", "evaluate_prior", "instance_ap", "load_prior", "make_scene", "masks_to_labels",
    "merge_duplicates", "mesh_picture", "normalise", "object_scans", "object_sdf", "pinhole_rays", "point_normals",
    "prior_mesh", "sample_params", "scene_seed", "sdf_box", "sdf_cylinder", "sdf_queries", "sdf_torus", "segment",
    "segmentation_picture", "sphere_trace", "surface_points", "train_prior", "view_eyes",
]

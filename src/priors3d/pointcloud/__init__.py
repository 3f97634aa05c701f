"""Point clouds: data sets (:mod:`~priors3d.pointcloud.data`), models (VN-PointNet, VN-DGCNN, their plain
counterparts, VN-OccNet and OccNet), training and evaluation under rotation protocols, occupancy data and
meshes."""

from .data import ModelNet40H5, ModelNet40Resampled, PointCloudDataset, ShapeNetPart, SyntheticShapes, make_dataset
from .distributed import DistContext, process_group
from .mesh import chamfer_l1, load_mesh, marching_cubes, reconstruct, save_mesh
from .models import build_model, is_equivariant
from .models.occnet import OccupancyNetwork, build_occnet
from .occupancy import OccupancyShapes, volumetric_iou
from .occupancy_training import (OccupancyTrainConfig, evaluate_occupancy, load_occupancy_run, run_occupancy_protocols,
                                 train_occupancy)
from .train import PointCloudTrainConfig, evaluate_model, load_run, protocol_table, run_protocols, train_pointcloud

__all__ = [
    "DistContext", "ModelNet40H5", "ModelNet40Resampled", "OccupancyNetwork", "OccupancyShapes", "OccupancyTrainConfig",
    "PointCloudDataset", "PointCloudTrainConfig", "ShapeNetPart", "SyntheticShapes", "build_model", "build_occnet",
    "chamfer_l1", "evaluate_model", "evaluate_occupancy", "is_equivariant", "load_mesh", "load_occupancy_run",
    "load_run", "make_dataset", "marching_cubes", "process_group", "protocol_table", "reconstruct",
    "run_occupancy_protocols", "run_protocols", "save_mesh", "train_occupancy", "train_pointcloud", "volumetric_iou",
]

"""Mutual-information gradient shaping: parameter Jacobians of pixels (JacobiNeRF) and of Gaussians
(InfoGaussian), label-free pair sources, positive pairs, the InfoNCE loss, shaping trainers, clicks, label
propagation and edits."""

from .clicks import Click, auto_clicks, dense_clicks, object_clicks
from .edit import recolor, select
from .infogs import SplatShapeConfig, edit_target, load_shaped, move_metrics, shape_splats
from .jacobian import pixel_jacobians, point_jacobians
from .losses import info_nce, shaping_loss
from .pairs import adaptive_feature_pairs, corrupt_masks, mask_pairs
from .propagate import first_order_responses, perturb_responses, volume_responses
from .shape import TUNED, ShapeConfig, evaluation_clicks, propagate_labels, shape_field
from .sources import (LabelFree, SegmentConfig, depth_geometry, descriptor_lookup, felzenszwalb, graph_segments,
                      label_free_source, rendered_geometry, segment_lookup, surface_segments)

__all__ = [
    "TUNED", "Click", "LabelFree", "SegmentConfig", "ShapeConfig", "SplatShapeConfig", "adaptive_feature_pairs",
    "auto_clicks", "corrupt_masks", "dense_clicks", "depth_geometry", "descriptor_lookup", "edit_target",
    "evaluation_clicks", "felzenszwalb", "first_order_responses", "graph_segments", "info_nce", "label_free_source",
    "load_shaped", "mask_pairs", "move_metrics", "object_clicks", "perturb_responses", "pixel_jacobians",
    "point_jacobians", "propagate_labels", "recolor", "rendered_geometry", "segment_lookup", "select", "shape_field",
    "shape_splats", "shaping_loss", "surface_segments", "volume_responses",
]

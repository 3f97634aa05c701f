"""Point clouds: data sets (:mod:`priors3d.pointcloud.data`), models and training."""

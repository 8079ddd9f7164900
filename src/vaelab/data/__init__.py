"""Datasets in memory and the pixel transforms that feed models."""

from vaelab.data.pixels import PIXEL_MODES, fixed_test_pixels, pixel_transform
from vaelab.data.sources import (
    DATASETS,
    ImageData,
    cache_dir,
    check_dataset_name,
    dataset_info,
    load_data,
    load_dataset,
)

__all__ = ["DATASETS", "PIXEL_MODES", "ImageData", "cache_dir", "check_dataset_name", "dataset_info",
           "fixed_test_pixels", "load_data", "load_dataset", "pixel_transform"]

"""Bundled public data sets, as tidy frames with ids.

Each loader documents its source, publication and licence; the same is written in a
README beside the files in ``henderson/datasets/data/``.
"""

from .loaders import (
    data_path,
    load_cpdata,
    load_gryphon,
    load_lme4,
    load_potato,
    load_wheat,
)

__all__ = ["data_path", "load_potato", "load_wheat", "load_gryphon", "load_lme4", "load_cpdata"]

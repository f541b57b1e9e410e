"""Data: from the user's images to the batches a model sees.

- ``manifest.py``: the manifest, one table of ``path, label`` (CSV or Parquet): reading, checking,
  writing, and building it from a folder per class; ``importers.py``: CUB, SOP and In-Shop;
  ``verify.py``: finding the rows a pipeline would trip over (missing or unreadable files);
- ``split.py``: class-disjoint train / val / test splits and the query / gallery roles (every
  split rule), with ``roles.py`` holding their encoding;
- ``dataset.py``: the image Dataset (decoding, the decoded-image cache); ``transforms.py`` and
  ``batch_augment.py``: the train and eval transforms, per item or a batch at a time;
- ``sampler.py``: the PK batch sampler; ``builtin.py``: the built-in data sets (the demo's glyphs).

Data sits below the configuration: it takes plain values (or any object with a run's data fields,
:class:`~lookalike.data.split.SplitSource`), never a config class.
"""

from lookalike.data.batch_augment import BatchTrainTransform, batchable
from lookalike.data.dataset import ImageDecodeError, ManifestDataset, load_rgb, to_rgb
from lookalike.data.importers import (
    FORMATS,
    detect_format,
    import_manifest,
    manifest_from_cub,
    manifest_from_inshop,
    manifest_from_sop,
)
from lookalike.data.manifest import (
    IMAGE_EXTENSIONS,
    ManifestError,
    check_values,
    file_sha256,
    is_image_file,
    manifest_from_folder,
    read_manifest,
    write_manifest,
)
from lookalike.data.roles import (
    ROLE_GALLERY,
    ROLE_QUERY,
    ROLE_QUERY_GALLERY,
    ROLE_TRAIN,
    ROLES,
    SPLITS,
    is_gallery,
    is_query,
)
from lookalike.data.sampler import PKSampler
from lookalike.data.split import (
    PROTOCOLS,
    SPLIT_FILE,
    SplitResult,
    resolve_split,
    sorted_class_split,
    split_manifest,
    split_summary,
)
from lookalike.data.transforms import CROP_MODES, INTERPOLATIONS, eval_transform, train_transform
from lookalike.data.verify import ManifestProblem, drop_problems, find_problems

__all__ = [
    "CROP_MODES",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "PROTOCOLS",
    "ROLES",
    "ROLE_GALLERY",
    "ROLE_QUERY",
    "ROLE_QUERY_GALLERY",
    "ROLE_TRAIN",
    "SPLITS",
    "SPLIT_FILE",
    "BatchTrainTransform",
    "ImageDecodeError",
    "ManifestDataset",
    "ManifestError",
    "ManifestProblem",
    "PKSampler",
    "SplitResult",
    "batchable",
    "check_values",
    "detect_format",
    "drop_problems",
    "eval_transform",
    "file_sha256",
    "find_problems",
    "import_manifest",
    "is_gallery",
    "is_image_file",
    "is_query",
    "load_rgb",
    "manifest_from_cub",
    "manifest_from_folder",
    "manifest_from_inshop",
    "manifest_from_sop",
    "read_manifest",
    "resolve_split",
    "sorted_class_split",
    "split_manifest",
    "split_summary",
    "to_rgb",
    "train_transform",
    "write_manifest",
]

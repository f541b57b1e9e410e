"""Models: the network that turns an image into an embedding, and its files.

- ``backbones.py``: the backbone factory over timm (``create_model`` names and aliases, the
  preprocessing each expects); ``small_cnn.py``: the small Conv-4 (``lookalike_convnet4``);
  ``weights.py``: loading local weights files;
- ``pooling.py``, ``heads.py``: pooling and embedding heads; ``embedder.py``: backbone + pooling +
  head as one :class:`Embedder`, with its parameter groups; ``freezing.py``: freezing policies;
- ``config.py``: the model's part of a config (:class:`ModelConfig`);
- ``checkpoint.py``: saving and loading checkpoints; ``inference.py``: a checkpoint or backbone
  ready to embed images, with its calibrated threshold.

Importing this package registers ``lookalike_convnet4`` in timm's model registry.
"""

from lookalike.models import small_cnn  # noqa: F401  (registers lookalike_convnet4 with timm)
from lookalike.models.backbones import (
    BACKBONE_ALIASES,
    Preprocessing,
    list_backbones,
    resolve_backbone_name,
    resolve_preprocessing,
)
from lookalike.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from lookalike.models.config import ModelConfig
from lookalike.models.embedder import Embedder, create_embedder, create_embedder_from
from lookalike.models.freezing import apply_freeze, find_blocks
from lookalike.models.heads import create_head
from lookalike.models.inference import InferenceModel, load_inference_model
from lookalike.models.onnx_runtime import OnnxEmbedder, load_onnx_model
from lookalike.models.pooling import GeM, gem
from lookalike.models.small_cnn import ConvNet4
from lookalike.models.weights import LoadReport, load_weights, read_state_dict

__all__ = [
    "BACKBONE_ALIASES",
    "Checkpoint",
    "ConvNet4",
    "Embedder",
    "GeM",
    "InferenceModel",
    "LoadReport",
    "ModelConfig",
    "OnnxEmbedder",
    "Preprocessing",
    "apply_freeze",
    "create_embedder",
    "create_embedder_from",
    "create_head",
    "find_blocks",
    "gem",
    "list_backbones",
    "load_checkpoint",
    "load_inference_model",
    "load_onnx_model",
    "load_weights",
    "read_state_dict",
    "resolve_backbone_name",
    "resolve_preprocessing",
    "save_checkpoint",
]

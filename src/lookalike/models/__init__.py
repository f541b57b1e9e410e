"""Models: timm backbones (plus the small convnet4), pooling, embedding heads, freezing, checkpoints.

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

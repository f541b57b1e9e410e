"""A model ready for inference: a trained checkpoint, or a frozen pretrained backbone (transfer mode).

:func:`load_inference_model` is the one way the ``embed``, ``evaluate``, ``calibrate`` and ``index``
commands, the gallery matcher and the service get their model. It returns an :class:`InferenceModel`:
the embedder in eval mode on its device, the preprocessing its inputs need, a fingerprint that says
which model this is (a gallery built with one model refuses another), and the match threshold that
``lookalike calibrate`` (or training) stored with it.

The fingerprint is the sha256 of the model itself, not of the file that holds it:

- its architecture (the model config, without the fields that only say where weights came from:
  ``weights`` and ``pretrained``),
- every tensor of its state dict (name, dtype, shape and bytes, in state-dict order),
- its preprocessing as canonical JSON.

So calibrating a checkpoint (which rewrites the file with a threshold) keeps its fingerprint, a
checkpoint and ``--backbone NAME --weights FILE`` of the same weights agree, and two random
initialisations of the same backbone differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lookalike.metrics.verification import Threshold
from lookalike.models.backbones import Preprocessing
from lookalike.models.checkpoint import load_checkpoint
from lookalike.models.config import ModelConfig
from lookalike.models.embedder import Embedder, create_embedder

__all__ = [
    "CALIBRATION_KEY",
    "InferenceModel",
    "backbone_model_config",
    "gallery_distance",
    "load_inference_model",
    "model_fingerprint",
    "threshold_from_calibration",
]

#: Where ``lookalike calibrate`` and training store the threshold in a checkpoint's ``extra``.
CALIBRATION_KEY = "calibration"

_SOURCE_ONLY_FIELDS = ("weights", "pretrained")


@dataclass(frozen=True)
class InferenceModel:
    """An embedder ready to embed images for search.

    Attributes:
        embedder: in eval mode, on the device it was loaded for.
        preprocessing: how images are prepared for it (size, mean/std, interpolation, crop).
        fingerprint: sha256 hex of the model (architecture, weights, preprocessing); see the module doc.
        threshold: the calibrated match threshold stored with the checkpoint, else None.
        calibration: the stored calibration as a dict (read it with
            :func:`lookalike.calibration.read_calibration`: a record with the target FPIR, the
            decision score and a threshold per gallery size, or an older lookalike's one threshold
            for a FAR with its figures), else None.
        source: ``"checkpoint:PATH"`` or ``"backbone:NAME"``.
        distance: how a gallery compares the embeddings (L2-normalised): ``"euclidean"`` (the
            default) or ``"cosine"`` (1 - cosine similarity), from the training config's
            ``eval.distance`` (``squared_euclidean`` ranks as ``euclidean``, ``dot`` as ``cosine``).
            The threshold is in this distance: a match is ``distance <= threshold.value``.
    """

    embedder: Embedder
    preprocessing: Preprocessing
    fingerprint: str
    threshold: Threshold | None
    calibration: dict[str, Any] | None
    source: str
    distance: str = "euclidean"

    @property
    def embed_dim(self) -> int:
        """Size of the embeddings, D."""
        return int(self.embedder.embed_dim)

    @property
    def device(self) -> torch.device:
        """The device the embedder's parameters are on."""
        return _module_device(self.embedder)


#: A training config's ``eval.distance`` -> the distance a gallery compares in (same ranking: the
#: embeddings are L2-normalised, so squared Euclidean ranks as Euclidean and the dot product as cosine).
_GALLERY_DISTANCE = {
    "euclidean": "euclidean",
    "squared_euclidean": "euclidean",
    "cosine": "cosine",
    "dot": "cosine",
}


def gallery_distance(name: str) -> str:
    """``"euclidean"`` or ``"cosine"`` for a lookalike distance name (see :data:`_GALLERY_DISTANCE`)."""
    if name not in _GALLERY_DISTANCE:
        raise ValueError(f"unknown distance {name!r}; expected one of {sorted(_GALLERY_DISTANCE)}")
    return _GALLERY_DISTANCE[name]


def backbone_model_config(
    backbone: str,
    *,
    weights: str | Path | None = None,
    image_size: int | None = None,
    pretrained: bool = False,
) -> ModelConfig:
    """The model config of transfer mode: the backbone's pooled features, frozen, as the embedding
    (identity head, ``embed_dim`` = the backbone's feature size, L2-normalised)."""
    return ModelConfig(
        backbone=backbone,
        weights=None if weights is None else str(weights),
        pretrained=pretrained,
        image_size=image_size,
        embed_dim=None,
        head="identity",
        freeze="frozen",
    )


def model_fingerprint(embedder: Embedder, preprocessing: Preprocessing | None = None) -> str:
    """sha256 hex of ``embedder``'s architecture, weights and preprocessing (see the module doc)."""
    prep = preprocessing if preprocessing is not None else embedder.preprocessing
    config = embedder.config.model_dump(mode="json")
    for field in _SOURCE_ONLY_FIELDS:
        config.pop(field, None)
    digest = hashlib.sha256()
    digest.update(b"lookalike-model-fingerprint-v1\n")
    digest.update(json.dumps(config, sort_keys=True).encode())
    digest.update(b"\n")
    for name, tensor in embedder.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer, not a copy
    digest.update(json.dumps(prep.to_dict(), sort_keys=True).encode())
    return digest.hexdigest()


def threshold_from_calibration(calibration: dict[str, Any] | None, *, where: str) -> Threshold | None:
    """The :class:`Threshold` stored under ``calibration["threshold"]`` (None when absent). For a
    calibration record (:mod:`lookalike.calibration.record`, a threshold per gallery size), the
    threshold for a gallery of the calibration's own size; a gallery sets its own from the record."""
    if calibration is None:
        return None
    if isinstance(calibration, dict) and "record" in calibration:
        return _record_threshold(calibration, where=where)
    if not isinstance(calibration, dict) or not isinstance(calibration.get("threshold"), dict):
        raise ValueError(
            f"{where}: extra[{CALIBRATION_KEY!r}] must be a dict with a 'threshold' dict (as written by "
            f"`lookalike calibrate`), got {type(calibration).__name__}"
        )
    fields = {f.name for f in dataclasses.fields(Threshold)}
    stored = calibration["threshold"]
    unknown = sorted(set(stored) - fields)
    required = [f.name for f in dataclasses.fields(Threshold) if f.default is dataclasses.MISSING]
    missing = sorted(m for m in required if m not in stored)
    if unknown or missing:
        raise ValueError(
            f"{where}: the stored threshold has unknown keys {unknown} / lacks {missing}; "
            f"expected the fields of Threshold: {sorted(fields)}"
        )
    return Threshold(**stored)


def _record_threshold(record: dict[str, Any], *, where: str) -> Threshold:
    from lookalike.metrics.identification import threshold_for_size

    try:
        value = threshold_for_size(record["thresholds"], int(record.get("calibration_objects") or 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{where}: the calibration record has no usable 'thresholds' table ({exc})"
        ) from None
    nan = float("nan")
    target = record.get("target_fpir")
    return Threshold(value, nan, nan, nan, nan, nan, False, f"fpir:{record.get('score')}", target)


def load_inference_model(
    *,
    checkpoint: str | Path | None = None,
    backbone: str | None = None,
    weights: str | Path | None = None,
    image_size: int | None = None,
    pretrained: bool = False,
    device: str | torch.device = "cpu",
) -> InferenceModel:
    """Load a model for inference, from exactly one of ``checkpoint`` or ``backbone``.

    - ``checkpoint``: a lookalike checkpoint (``.pt``); its threshold and calibration figures come
      from ``extra["calibration"]`` when ``lookalike calibrate`` or training stored them, and its
      distance from the training config's ``eval.distance``.
    - ``backbone``: transfer mode, a frozen pretrained backbone whose pooled features are the
      embedding (see :func:`backbone_model_config`): a timm name or a lookalike alias such as
      ``dinov2_vits14``, with ``weights`` (a local .safetensors/.pt file in timm key names) or
      ``pretrained=True`` (download through timm; fails offline with a message saying to pass
      ``weights``), or neither (random initialisation, for tests). ``image_size`` overrides the
      backbone's input size. No threshold (calibrate with ``lookalike calibrate --backbone``).

    ``weights``, ``image_size`` and ``pretrained`` belong to ``backbone`` mode: with ``checkpoint``
    they raise ValueError (a checkpoint holds its weights and its preprocessing).
    """
    if (checkpoint is None) == (backbone is None):
        raise ValueError("give exactly one of checkpoint=PATH (a trained model) or backbone=NAME (frozen)")
    device = torch.device(device)
    if checkpoint is not None:
        extras = {"weights": weights, "image_size": image_size, "pretrained": pretrained or None}
        given = sorted(k for k, v in extras.items() if v is not None)
        if given:
            raise ValueError(
                f"{given} only apply to backbone mode; a checkpoint ({checkpoint}) holds its own weights and "
                "preprocessing"
            )
        ckpt = load_checkpoint(checkpoint, map_location="cpu")
        extra = ckpt.extra or {}
        calibration = extra.get(CALIBRATION_KEY)
        threshold = threshold_from_calibration(calibration, where=str(checkpoint))
        eval_cfg = (ckpt.config or {}).get("eval") or {}
        distance = gallery_distance(str(eval_cfg.get("distance") or "euclidean"))
        embedder = ckpt.embedder
        source = f"checkpoint:{checkpoint}"
    else:
        assert backbone is not None
        if weights is not None and not Path(weights).is_file():
            raise FileNotFoundError(f"weights file not found: {weights}")
        embedder = create_embedder(
            backbone_model_config(backbone, weights=weights, image_size=image_size, pretrained=pretrained)
        )
        calibration, threshold, distance = None, None, "euclidean"
        source = f"backbone:{backbone}"
    fingerprint = model_fingerprint(embedder)
    embedder = embedder.to(device).eval()
    return InferenceModel(
        embedder=embedder,
        preprocessing=embedder.preprocessing,
        fingerprint=fingerprint,
        threshold=threshold,
        calibration=dict(calibration) if calibration is not None else None,
        source=source,
        distance=distance,
    )


def _module_device(module: torch.nn.Module) -> torch.device:
    for param in module.parameters():
        return param.device
    for buf in module.buffers():
        return buf.device
    return torch.device("cpu")

"""Backbones by name: lookalike aliases over timm's registry, pretrained download, preprocessing."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import asdict, dataclass
from typing import Any

import timm
from torch import nn

__all__ = [
    "BACKBONE_ALIASES",
    "Preprocessing",
    "create_timm_backbone",
    "list_backbones",
    "resolve_backbone_name",
    "resolve_preprocessing",
]

#: Short names for common backbones -> timm ``arch.tag`` names.
BACKBONE_ALIASES: dict[str, str] = {
    "dinov2_vits14": "vit_small_patch14_dinov2.lvd142m",
    "dinov2_vitb14": "vit_base_patch14_dinov2.lvd142m",
    "dinov2_vitl14": "vit_large_patch14_dinov2.lvd142m",
    "dinov2_vitg14": "vit_giant_patch14_dinov2.lvd142m",
    "dinov2_vits14_reg": "vit_small_patch14_reg4_dinov2.lvd142m",
    "dinov2_vitb14_reg": "vit_base_patch14_reg4_dinov2.lvd142m",
    "dinov2_vitl14_reg": "vit_large_patch14_reg4_dinov2.lvd142m",
    "dinov2_vitg14_reg": "vit_giant_patch14_reg4_dinov2.lvd142m",
    "dino_vits16": "vit_small_patch16_224.dino",
    "clip_vitb16": "vit_base_patch16_clip_224.openai",
    "clip_vitl14": "vit_large_patch14_clip_224.openai",
    "resnet18": "resnet18.a1_in1k",
    "resnet50": "resnet50.a1_in1k",
    "mobilenetv2_100": "mobilenetv2_100.ra_in1k",
    "efficientnet_b0": "efficientnet_b0.ra_in1k",
    "convnext_tiny": "convnext_tiny.fb_in22k_ft_in1k",
    "convnet4": "lookalike_convnet4",
}


def resolve_backbone_name(name: str) -> str:
    """An alias or a timm name -> the timm name to create (``'dinov2_vits14'`` -> ``'vit_small_..'``).

    Raises ValueError naming close matches when neither an alias nor a timm architecture has the name.
    """
    if name in BACKBONE_ALIASES:
        return BACKBONE_ALIASES[name]
    arch, _, tag = name.partition(".")
    if timm.is_model(arch):
        if tag and f"{arch}.{tag}" not in timm.models.get_arch_pretrained_cfgs(arch):
            tags = sorted(timm.models.get_arch_pretrained_cfgs(arch))
            raise ValueError(f"unknown pretrained tag {tag!r} for backbone {arch!r}; valid: {tags}")
        return name
    candidates = [*BACKBONE_ALIASES, *timm.list_models()]
    close = difflib.get_close_matches(arch, candidates, n=8, cutoff=0.6)
    hint = f"; close matches: {close}" if close else ""
    raise ValueError(
        f"unknown backbone {name!r}: not a lookalike alias ({sorted(BACKBONE_ALIASES)}) nor a timm model"
        f"{hint}. See lookalike.models.list_backbones('pattern*')."
    )


def list_backbones(pattern: str | None = None, *, pretrained: bool = False) -> list[str]:
    """Aliases, then timm model names, matching the glob ``pattern`` (all when None).

    ``pretrained=True`` lists timm ``arch.tag`` names that have downloadable weights instead of
    architectures (aliases are always listed).
    """
    glob = pattern or "*"
    aliases = sorted(a for a in BACKBONE_ALIASES if fnmatch.fnmatch(a, glob))
    names = timm.list_models(glob, pretrained=pretrained)
    return aliases + [n for n in names if n not in BACKBONE_ALIASES]


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a backbone (from timm's pretrained config).

    ``image_size`` is the square input side; ``mean``/``std`` are per channel, for inputs scaled to
    [0, 1]; ``interpolation`` is a torchvision/PIL mode name ("bicubic", "bilinear", ...);
    ``crop_pct`` is the centre-crop fraction used at evaluation (resize to image_size / crop_pct);
    ``crop_mode`` is timm's eval crop mode ("center", "squash" or "border"). See
    :func:`lookalike.data.eval_transform`.
    """

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    crop_pct: float = 1.0
    crop_mode: str = "center"

    def to_dict(self) -> dict[str, Any]:
        """Plain python types (lists for tuples are avoided: tuples load fine with weights_only)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"unknown preprocessing keys {unknown}; valid keys are {sorted(valid)}")
        return cls(
            image_size=int(data["image_size"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            interpolation=str(data.get("interpolation", "bicubic")),
            crop_pct=float(data.get("crop_pct", 1.0)),
            crop_mode=str(data.get("crop_mode", "center")),
        )


def resolve_preprocessing(
    backbone: nn.Module, *, image_size: int | None = None, in_chans: int = 3
) -> Preprocessing:
    """Preprocessing from the backbone's timm data config; ``image_size`` overrides its input size.

    With ``in_chans`` other than the config's channel count, mean and std become their channel
    average repeated ``in_chans`` times (what timm does to the first conv: it sums over channels).
    """
    data_cfg = timm.data.resolve_model_data_config(backbone)
    _, height, width = data_cfg["input_size"]
    mean = tuple(float(v) for v in data_cfg["mean"])
    std = tuple(float(v) for v in data_cfg["std"])
    if len(mean) != in_chans:
        mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
    return Preprocessing(
        image_size=int(image_size if image_size is not None else max(height, width)),
        mean=mean,
        std=std,
        interpolation=str(data_cfg.get("interpolation", "bicubic")),
        crop_pct=float(data_cfg.get("crop_pct", 1.0)),
        crop_mode=str(data_cfg.get("crop_mode") or "center"),
    )


def _is_download_error(error: BaseException) -> bool:
    module = type(error).__module__ or ""
    return isinstance(error, (OSError, ConnectionError, TimeoutError)) or module.startswith(
        ("huggingface_hub", "requests", "urllib3", "httpx", "urllib")
    )


def create_timm_backbone(
    name: str,
    *,
    pretrained: bool = False,
    in_chans: int = 3,
    image_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """``timm.create_model(resolved name, num_classes=0)``: a pooled feature extractor.

    ``image_size`` is passed as timm's ``img_size`` to models with a fixed input size (ViTs); other
    models accept any size. ``kwargs`` go to timm (which rejects unknown ones). With ``pretrained=True``
    a failed download raises RuntimeError suggesting ``weights=PATH``.
    """
    timm_name = resolve_backbone_name(name)
    model_kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": in_chans, **kwargs}
    if image_size is not None:
        pretrained_cfg = timm.models.get_pretrained_cfg(timm_name, allow_unregistered=True)
        default_size = pretrained_cfg.input_size[-1] if pretrained_cfg is not None else None
        if pretrained_cfg is not None and pretrained_cfg.fixed_input_size and image_size != default_size:
            model_kwargs["img_size"] = image_size
    if not pretrained:
        return timm.create_model(timm_name, pretrained=False, **model_kwargs)
    try:
        return timm.create_model(timm_name, pretrained=True, **model_kwargs)
    except Exception as error:
        if not _is_download_error(error):
            raise
        raise RuntimeError(
            f"the pretrained weights for backbone {name!r} (timm {timm_name!r}) could not be downloaded "
            f"(offline? {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            "Download them elsewhere and pass a local .safetensors/.pt file with weights=PATH "
            "(`--set model.weights=PATH` in the CLI) and pretrained=False."
        ) from error

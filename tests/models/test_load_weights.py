from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from lookalike.models import ModelConfig, create_embedder, load_weights, read_state_dict


class _Custom:
    """An arbitrary python object: torch.load(weights_only=True) refuses to unpickle it."""


def _timm_reference(path: Path) -> torch.nn.Module:
    model = timm.create_model("mobilenetv2_100", num_classes=0)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def test_shared_mobilenet_loads_cleanly_and_matches_timm(mobilenet_weights: Path) -> None:
    embedder = create_embedder(ModelConfig(weights=str(mobilenet_weights), freeze="frozen")).eval()
    assert embedder.load_report is not None and embedder.load_report.ok
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(embedder.features(x), _timm_reference(mobilenet_weights)(x))


def test_pt_copy_and_wrappers_load_with_weights_only(mobilenet_weights: Path, tmp_path: Path) -> None:
    state = load_file(str(mobilenet_weights))
    files = [("raw.pt", state), ("wrapped.pth", {"state_dict": state}), ("model.pt", {"model": state})]
    for name, obj in files:
        torch.save(obj, tmp_path / name)
        model = timm.create_model("mobilenetv2_100", num_classes=0)
        assert load_weights(model, tmp_path / name).ok
        torch.testing.assert_close(model.state_dict()["conv_stem.weight"], state["conv_stem.weight"])


def _small_state() -> dict[str, torch.Tensor]:
    return timm.create_model("lookalike_convnet4", num_classes=0, width=8).state_dict()


def test_wrong_shape_is_refused_naming_key_and_shapes(tmp_path: Path) -> None:
    state = _small_state()
    state["blocks.1.conv.weight"] = torch.zeros(8, 8, 5, 5)
    save_file(state, str(tmp_path / "bad.safetensors"))
    model = timm.create_model("lookalike_convnet4", num_classes=0, width=8)
    message = r"blocks\.1\.conv\.weight: file \(8, 8, 5, 5\) vs model \(8, 8, 3, 3\)"
    with pytest.raises(ValueError, match=message):
        load_weights(model, tmp_path / "bad.safetensors")
    report = load_weights(model, tmp_path / "bad.safetensors", strict_shapes=False)
    assert report.mismatched == ["blocks.1.conv.weight"] and not report.missing


def test_missing_and_unexpected_keys_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = _small_state()
    del state["blocks.3.bn.weight"]
    state["fc.weight"] = torch.zeros(10, 8)  # a classifier the feature extractor does not have
    save_file(state, str(tmp_path / "partial.safetensors"))
    model = timm.create_model("lookalike_convnet4", num_classes=0, width=8)
    with caplog.at_level(logging.WARNING):
        report = load_weights(model, tmp_path / "partial.safetensors")
    assert report.missing == ["blocks.3.bn.weight"]
    assert report.unexpected == ["fc.weight"]
    assert "blocks.3.bn.weight" in caplog.text


def test_bad_files(tmp_path: Path) -> None:
    model = timm.create_model("lookalike_convnet4", num_classes=0, width=8)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_weights(model, tmp_path / "nope.pt")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unsupported weights file 'w.onnx'.*\.safetensors"):
        load_weights(model, tmp_path / "w.onnx")
    torch.save({"other": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"no key of .* matches ConvNet4"):
        load_weights(model, tmp_path / "other.pt")
    torch.save({"x": _Custom()}, tmp_path / "pickle.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(tmp_path / "pickle.pt")


def test_vit_pos_embed_is_resampled_for_another_image_size(tmp_path: Path) -> None:
    small = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32)
    save_file(small.state_dict(), str(tmp_path / "vit32.safetensors"))
    large = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=48)
    assert load_weights(large, tmp_path / "vit32.safetensors").ok
    assert large.pos_embed.shape == (1, 1 + 9, 192)
    torch.testing.assert_close(large.pos_embed[:, :1], small.pos_embed[:, :1])  # class token untouched

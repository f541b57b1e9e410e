"""load_inference_model: checkpoint and backbone (transfer) modes, the fingerprint, the stored threshold."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lookalike.metrics.verification import Threshold
from lookalike.models import create_embedder_from, load_checkpoint, save_checkpoint
from lookalike.models.inference import (
    InferenceModel,
    backbone_model_config,
    load_inference_model,
    model_fingerprint,
)


def _tiny_embedder(seed: int = 0):
    torch.manual_seed(seed)
    return create_embedder_from("convnet4", image_size=16, embed_dim=8, backbone_kwargs={"width": 8})


def _threshold() -> Threshold:
    return Threshold(
        value=0.7, far=0.01, tar=0.8, frr=0.2, precision=0.9, f1=0.85, higher_is_closer=False,
        method="far", target_far=0.01,
    )  # fmt: skip


def test_checkpoint_mode_gives_the_saved_model_threshold_and_distance(tmp_path):
    emb = _tiny_embedder()
    calibration = {"threshold": dataclasses.asdict(_threshold()), "roc_auc": 0.93, "split": "val"}
    path = save_checkpoint(
        tmp_path / "m.pt",
        emb,
        config={"eval": {"distance": "cosine"}},
        extra={"calibration": calibration},
    )
    model = load_inference_model(checkpoint=path)
    assert isinstance(model, InferenceModel)
    assert model.threshold == _threshold()
    assert model.calibration == calibration
    assert model.distance == "cosine"
    assert model.source == f"checkpoint:{path}"
    assert not model.embedder.training
    assert model.embed_dim == 8
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(model.embedder(x), emb.eval()(x))


@pytest.mark.parametrize(
    ("trained_with", "gallery"),
    [("euclidean", "euclidean"), ("squared_euclidean", "euclidean"), ("cosine", "cosine"), ("dot", "cosine")],
)
def test_distance_is_the_gallery_form_of_the_training_distance(tmp_path, trained_with, gallery):
    path = save_checkpoint(tmp_path / "m.pt", _tiny_embedder(), config={"eval": {"distance": trained_with}})
    assert load_inference_model(checkpoint=path).distance == gallery


def test_checkpoint_without_calibration_has_no_threshold(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _tiny_embedder())
    model = load_inference_model(checkpoint=path)
    assert model.threshold is None and model.calibration is None
    assert model.distance == "euclidean"


def test_fingerprint_depends_on_weights_not_on_the_file(tmp_path):
    emb = _tiny_embedder(0)
    a = save_checkpoint(tmp_path / "a.pt", emb)
    b = save_checkpoint(
        tmp_path / "b.pt", emb, extra={"calibration": {"threshold": dataclasses.asdict(_threshold())}}
    )
    c = save_checkpoint(tmp_path / "c.pt", _tiny_embedder(1))
    fa, fb, fc = (load_inference_model(checkpoint=p).fingerprint for p in (a, b, c))
    assert len(fa) == 64 and int(fa, 16) >= 0
    assert fa == fb  # calibrating (rewriting the file with a threshold) keeps the fingerprint
    assert fa != fc
    assert fa == model_fingerprint(load_checkpoint(a).embedder)


def test_fingerprint_changes_with_preprocessing():
    emb = _tiny_embedder()
    other = dataclasses.replace(emb.preprocessing, image_size=17)
    assert model_fingerprint(emb) != model_fingerprint(emb, other)


def test_backbone_mode_with_local_weights(mobilenet_weights):
    model = load_inference_model(backbone="mobilenetv2_100", weights=mobilenet_weights, image_size=64)
    assert model.source == "backbone:mobilenetv2_100"
    assert model.embed_dim == 1280 and model.preprocessing.image_size == 64
    assert model.threshold is None and model.distance == "euclidean"
    assert all(not p.requires_grad for p in model.embedder.backbone.parameters())
    # the weights file really is loaded: same fingerprint twice, different from a random init
    again = load_inference_model(backbone="mobilenetv2_100", weights=mobilenet_weights, image_size=64)
    random = load_inference_model(backbone="mobilenetv2_100", image_size=64)
    assert model.fingerprint == again.fingerprint != random.fingerprint
    out = model.embedder(torch.rand(2, 3, 64, 64))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_backbone_and_checkpoint_of_the_same_weights_agree(tmp_path):
    torch.manual_seed(0)
    from lookalike.models import create_embedder

    emb = create_embedder(backbone_model_config("convnet4", image_size=16))
    weights = tmp_path / "w.pt"
    torch.save(emb.backbone.state_dict(), weights)
    ckpt = save_checkpoint(tmp_path / "m.pt", emb)
    by_backbone = load_inference_model(backbone="convnet4", weights=weights, image_size=16)
    assert by_backbone.fingerprint == load_inference_model(checkpoint=ckpt).fingerprint


def test_dinov2_alias_builds_offline_without_weights():
    model = load_inference_model(backbone="dinov2_vits14", image_size=28)
    assert model.embed_dim == 384 and model.preprocessing.image_size == 28
    assert model.embedder(torch.rand(1, 3, 28, 28)).shape == (1, 384)


def test_pretrained_download_failure_is_a_clear_error(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("Network is unreachable")
        return original(*args, **kwargs)

    original = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match=r"could not be downloaded.*weights=PATH"):
        load_inference_model(backbone="mobilenetv2_100", pretrained=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of"),
        ({"checkpoint": "x.pt", "backbone": "convnet4"}, "exactly one of"),
        ({"checkpoint": "x.pt", "image_size": 32}, r"\['image_size'\] only apply to backbone mode"),
        ({"backbone": "convnet4", "weights": "/no/such.safetensors"}, "weights file not found"),
        ({"backbone": "no_such_net"}, "unknown backbone 'no_such_net'"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_inference_model(**kwargs)


def test_a_malformed_stored_calibration_is_refused(tmp_path):
    path = save_checkpoint(
        tmp_path / "m.pt", _tiny_embedder(), extra={"calibration": {"threshold": {"value": 1.0}}}
    )
    with pytest.raises(ValueError, match="lacks"):
        load_inference_model(checkpoint=path)

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import lookalike
from lookalike.models import (
    ModelConfig,
    create_embedder,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)


def _trained_embedder() -> torch.nn.Module:
    config = ModelConfig(backbone="convnet4", pooling="gem", head="mlp", neck_bn=True, embed_dim=16)
    embedder = create_embedder(config)
    embedder(torch.randn(8, 3, 32, 32))  # train mode: BN running stats move away from their init
    with torch.no_grad():
        embedder.backbone.global_pool.p.fill_(2.5)
    return embedder.eval()


def test_round_trip_rebuilds_identical_embedder(tmp_path: Path) -> None:
    embedder = _trained_embedder()
    train_config = {"model": embedder.config.model_dump(), "optim": {"lr": 3e-4}}
    extra = {"epoch": 3, "optimizer": {"state": {}, "param_groups": []}, "rng": torch.get_rng_state()}
    path = save_checkpoint(tmp_path / "run" / "last.pt", embedder, config=train_config, extra=extra)
    assert path == tmp_path / "run" / "last.pt"
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "lookalike-checkpoint" and raw["version"] == lookalike.__version__

    loaded = load_checkpoint(path)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.embedder(x), embedder(x), rtol=0, atol=0)
    assert not loaded.embedder.training
    assert loaded.embedder.config == embedder.config
    assert loaded.preprocessing == embedder.preprocessing == loaded.embedder.preprocessing
    assert loaded.config == train_config
    assert loaded.extra["epoch"] == 3
    torch.testing.assert_close(loaded.extra["rng"], extra["rng"])
    assert loaded.version == lookalike.__version__


def test_rebuild_does_not_download_or_need_the_weights_file(tmp_path: Path, mobilenet_weights: Path) -> None:
    config = ModelConfig(weights=str(mobilenet_weights), image_size=64, freeze="frozen", embed_dim=8)
    embedder = create_embedder(config).eval()
    path = save_checkpoint(tmp_path / "m.pt", embedder)
    # a checkpoint written with pretrained=True must not download either: simulate it in the file
    raw = torch.load(path, weights_only=True)
    raw["model_config"]["pretrained"], raw["model_config"]["weights"] = True, None
    torch.save(raw, path)
    loaded = load_checkpoint(path)
    assert loaded.embedder.config.pretrained is False and loaded.embedder.config.weights is None
    assert loaded.embedder.preprocessing.image_size == 64
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.embedder(x), embedder(x), rtol=0, atol=0)


def test_checkpoint_backbone_weights_load_as_weights(tmp_path: Path) -> None:
    embedder = _trained_embedder()
    path = save_checkpoint(tmp_path / "c.pt", embedder)
    other = create_embedder(embedder.config)
    report = load_weights(other.backbone, path)
    assert report.ok
    torch.testing.assert_close(other.backbone.state_dict(), embedder.backbone.state_dict())


def test_refuses_files_that_are_not_lookalike_checkpoints(tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"is not a lookalike checkpoint .*load_weights"):
        load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="is not a lookalike checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="config must be a plain dict"):
        save_checkpoint(tmp_path / "x.pt", _trained_embedder(), config=ModelConfig())  # type: ignore[arg-type]


def test_training_state_must_be_plain(tmp_path: Path) -> None:
    embedder = _trained_embedder()
    with pytest.raises(TypeError, match=r"extra\['rng'\]\['numpy'\] is a numpy.ndarray"):
        save_checkpoint(tmp_path / "x.pt", embedder, extra={"rng": {"numpy": np.zeros(3)}})
    with pytest.raises(TypeError, match=r"config\['root'\] is a pathlib"):
        save_checkpoint(tmp_path / "x.pt", embedder, config={"root": tmp_path})
    assert not list(tmp_path.iterdir())
    plain = {"sizes": torch.Size([2, 3]), "dtype": torch.float16, "seen": {1, 2}, "state": (1, "a", None)}
    loaded = load_checkpoint(save_checkpoint(tmp_path / "ok.pt", embedder, extra=plain))
    assert loaded.extra == plain

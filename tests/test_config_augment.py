"""The ``augment`` config section: strict, validated, today's behaviour by default, used by training."""

import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from lookalike.config import AugmentConfig, ConfigError, load_config, validate_config

REPO = Path(__file__).resolve().parents[1]
BASE = {"data": {"root": "images"}, "model": {"backbone": "convnet4", "embed_dim": 8}}


def _write(tmp_path, raw):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_defaults_are_the_natural_image_augmentations():
    augment = validate_config(BASE).augment
    assert augment == AugmentConfig()
    assert augment.model_dump() == {
        "hflip": True,
        "vflip": False,
        "crop_scale": (0.2, 1.0),
        "crop_ratio": (0.75, 4 / 3),
        "rotation": 0.0,
        "color_jitter": 0.0,
        "hue": 0.0,
    }


def test_yaml_and_overrides_set_augmentations(tmp_path):
    raw = {**BASE, "augment": {"hflip": False, "crop_scale": [0.5, 1.0]}}
    cfg = load_config(_write(tmp_path, raw), ["augment.rotation=10", "augment.color_jitter=0.3"])
    assert (cfg.augment.hflip, cfg.augment.crop_scale) == (False, (0.5, 1.0))
    assert (cfg.augment.rotation, cfg.augment.color_jitter) == (10.0, 0.3)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment.flip=false", r"augment\.flip: unknown key; valid keys here: hflip, vflip, crop_scale"),
        (
            "augment.crop_scale=[0.8,0.2]",
            r"augment.crop_scale must be \[low, high\] with 0 < low <= high <= 1",
        ),
        ("augment.crop_scale=[0,1]", r"augment.crop_scale must be"),
        ("augment.crop_ratio=[2,1]", r"augment.crop_ratio must be \[low, high\] with 0 < low <= high"),
        ("augment.rotation=270", r"augment.rotation: .*less than or equal to 180"),
        ("augment.color_jitter=-0.1", r"augment.color_jitter: .*greater than or equal to 0"),
        ("augment.hue=0.6", r"augment.hue: .*less than or equal to 0.5"),
        ("augment.hflip=sometimes", r"augment.hflip: .*valid boolean"),
    ],
)
def test_bad_augmentations_are_refused_with_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, BASE), [override])


def test_example_configs_flip_only_where_the_data_allows():
    assert load_config(REPO / "configs" / "omniglot_cnn.yaml").augment.hflip is False  # characters
    assert load_config(REPO / "configs" / "cub_mobilenetv2.yaml").augment.hflip is True  # birds


def test_training_builds_its_train_transform_from_the_augment_section(tmp_path, monkeypatch):
    """Whichever training module builds the train transform gets the section's values."""
    import lookalike.training  # noqa: F401  (loads the training modules)
    from lookalike.data import train_transform
    from lookalike.training import fit

    calls = []

    def spy(preprocessing, **kwargs):
        calls.append(kwargs)
        return train_transform(preprocessing, **kwargs)

    patched = 0
    for name, module in list(sys.modules.items()):
        if (
            name.startswith("lookalike.training")
            and getattr(module, "train_transform", None) is train_transform
        ):
            monkeypatch.setattr(module, "train_transform", spy)
            patched += 1
    assert patched, "no lookalike.training module builds the train transform with train_transform"
    root = tmp_path / "images"
    for c in range(6):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (40 * c, 10 * i, 100)).save(root / f"c{c}" / f"{i}.png")
    cfg = validate_config(
        {
            "data": {"root": str(root), "val": 0.2, "test": 0.2},
            "augment": {"hflip": False, "rotation": 5.0},
            "model": {"backbone": "convnet4", "embed_dim": 8, "image_size": 16},
            "sampler": {"p": 2, "k": 2},
            "train": {"epochs": 0},
        }
    )
    fit(cfg, tmp_path / "run")
    assert calls and calls[0]["hflip"] is False and calls[0]["rotation"] == 5.0

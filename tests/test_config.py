import pytest
import yaml

from lookalike.config import ConfigError, load_config, save_config, validate_config

BASE = {
    "data": {"root": "images", "val": 0.1, "test": 0.2},
    "model": {"backbone": "convnet4", "embed_dim": 32},
    "miner": {"name": "semihard", "margin": 0.3},
    "loss": {"name": "triplet", "margin": 0.3},
    "train": {"epochs": 2},
}


def _write(tmp_path, raw):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_load_applies_overrides_and_keeps_miner_loss_options(tmp_path):
    cfg = load_config(_write(tmp_path, BASE), ["optim.lr=1e-3", "eval.ks=[5,1]", "loss.margin=0.5"])
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.eval.ks == [1, 5]
    assert cfg.loss.kwargs() == {"margin": 0.5}
    assert cfg.miner.kwargs() == {"margin": 0.3}
    assert cfg.model.backbone == "convnet4" and cfg.model.embed_dim == 32


def test_set_replaces_a_whole_section_without_the_old_options(tmp_path):
    cfg = load_config(
        _write(tmp_path, BASE), ["loss={name: multi_similarity, alpha: 3}", "miner={name: null}"]
    )
    assert cfg.loss.name == "multi_similarity" and cfg.loss.kwargs() == {"alpha": 3}
    assert cfg.miner.name is None and cfg.miner.kwargs() == {}
    # with only loss.name changed, the triplet margin would stay and be refused by multi_similarity
    with pytest.raises(ConfigError, match=r"loss 'multi_similarity' has no option\(s\) margin"):
        load_config(_write(tmp_path, BASE), ["loss.name=multi_similarity"])
    with pytest.raises(ConfigError, match=r"a whole section takes a mapping"):
        load_config(_write(tmp_path, BASE), ["loss=triplet"])


def test_unknown_key_fails_and_lists_valid_ones(tmp_path):
    raw = {**BASE, "optim": {"lr": 1e-3, "learning_rate": 2}}
    with pytest.raises(
        ConfigError, match=r"optim\.learning_rate: unknown key; valid keys here: lr, backbone_lr"
    ):
        load_config(_write(tmp_path, raw))
    with pytest.raises(ConfigError, match=r"unknown section 'optimiser'"):
        load_config(_write(tmp_path, BASE), ["optimiser.lr=1"])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        load_config(_write(tmp_path, BASE), ["lr=1"])


def test_loss_and_miner_options_are_checked_against_their_signature(tmp_path):
    with pytest.raises(
        ConfigError, match=r"loss 'triplet' has no option\(s\) margn; valid options: .*margin"
    ):
        load_config(_write(tmp_path, BASE), ["loss.margn=0.1"])
    with pytest.raises(ConfigError, match=r"loss.name 'tripletz' is not known; valid names: .*triplet"):
        load_config(_write(tmp_path, BASE), ["loss.name=tripletz"])
    with pytest.raises(ConfigError, match=r"miner.name 'nope' is not known"):
        load_config(_write(tmp_path, BASE), ["miner.name=nope"])
    assert load_config(_write(tmp_path, BASE), ["miner.name=null"]).miner.name is None


def test_value_errors_name_the_key_and_the_bad_value(tmp_path):
    with pytest.raises(ConfigError, match=r"data: .*val \+ data.test must be < 1"):
        load_config(_write(tmp_path, BASE), ["data.val=0.5", "data.test=0.6"])
    with pytest.raises(ConfigError, match=r"eval: .*eval.metric 'hit_rate@5' is not computed"):
        load_config(_write(tmp_path, BASE), ["eval.metric=hit_rate@5"])
    with pytest.raises(ConfigError, match=r"train.epochs.*got -1"):
        load_config(_write(tmp_path, BASE), ["train.epochs=-1"])


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(_write(tmp_path, BASE), ["memory.size=64"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = validate_config(yaml.safe_load(path.read_text()))
    assert again == cfg
    assert not list((tmp_path / "run").glob(".*"))  # no temp file left behind


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_batch_losses_refuse_a_miner(tmp_path):
    with pytest.raises(ConfigError, match=r"loss 'arcface' is computed on the whole batch.*miner.name: null"):
        load_config(_write(tmp_path, BASE), ["loss.name=arcface"])
    cfg = load_config(_write(tmp_path, BASE), ["loss.name=range", "miner.name=null"])
    assert cfg.loss.name == "range"


def test_loss_and_miner_take_a_distance_by_name(tmp_path):
    from lookalike.distances import CosineSimilarity, EuclideanDistance
    from lookalike.losses import TripletLoss, create_loss
    from lookalike.miners import SemiHardMiner, create_miner

    raw = {**BASE, "miner": {"name": "semihard", "margin": 0.1, "distance": "cosine"}}
    raw["loss"] = {"name": "triplet", "margin": 0.1, "distance": "cosine"}
    cfg = load_config(_write(tmp_path, raw))
    assert cfg.loss.kwargs() == {"margin": 0.1, "distance": "cosine"}
    loss = create_loss(cfg.loss.name, **cfg.loss.kwargs())  # what training builds
    miner = create_miner(cfg.miner.name, **cfg.miner.kwargs())
    assert isinstance(loss, TripletLoss) and isinstance(loss.distance, CosineSimilarity)
    assert isinstance(miner, SemiHardMiner) and isinstance(miner.distance, CosineSimilarity)
    # --set works too, and the resolved config round-trips with the name
    cfg = load_config(_write(tmp_path, BASE), ["loss.distance=squared_euclidean"])
    built = create_loss(cfg.loss.name, **cfg.loss.kwargs())
    assert isinstance(built.distance, EuclideanDistance) and built.distance.squared
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml").loss.kwargs()["distance"] == "squared_euclidean"


def test_unknown_distance_name_lists_the_valid_ones(tmp_path):
    valid = "cosine, dot, euclidean, squared_euclidean"
    with pytest.raises(
        ConfigError, match=rf"loss.distance 'cosin' is not a known distance; valid names: {valid}"
    ):
        load_config(_write(tmp_path, BASE), ["loss.distance=cosin"])
    with pytest.raises(ConfigError, match=rf"miner.distance 3 is not a known distance; valid names: {valid}"):
        load_config(_write(tmp_path, BASE), ["miner.distance=3"])


def test_the_default_recipe_is_multi_similarity_without_a_miner():
    """Chosen by measurement (BENCHMARKS.md, issue 12): it beat triplet + semi-hard on the test split
    of omniglot-small, the CUB subset and emoji-styles. A config that names no loss or miner trains it."""
    from lookalike.losses import MultiSimilarityLoss, create_loss

    cfg = validate_config({"data": {"root": "images"}})
    assert cfg.loss.name == "multi_similarity" and cfg.loss.kwargs() == {}
    assert cfg.miner.name is None
    assert isinstance(create_loss(cfg.loss.name, **cfg.loss.kwargs()), MultiSimilarityLoss)
    # naming a loss alone does not bring back the old miner: triplet then sees every valid triplet
    assert validate_config({"data": {"root": "images"}, "loss": {"name": "triplet"}}).miner.name is None


def test_target_fpir_defaults_to_five_percent_and_must_be_a_rate(tmp_path):
    assert validate_config(BASE).eval.target_fpir == 0.05
    assert validate_config({**BASE, "eval": {"target_fpir": None}}).eval.target_fpir is None
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match=rf"eval.target_fpir: .*(greater|less) than.*\(got {bad}\)"):
            validate_config({**BASE, "eval": {"target_fpir": bad}})


def test_target_far_is_a_deprecated_alias_of_target_fpir_that_says_so(tmp_path):
    from lookalike.config import ConfigDeprecationWarning

    with pytest.warns(ConfigDeprecationWarning) as caught:
        cfg = load_config(_write(tmp_path, {**BASE, "eval": {"target_far": 0.02}}))
    (warning,) = caught
    message = str(warning.message)
    assert "eval.target_far is a deprecated alias of eval.target_fpir" in message
    assert "write eval.target_fpir" in message
    assert cfg.eval.target_fpir == 0.02 and "target_far" not in cfg.eval.model_dump()
    saved = yaml.safe_load(save_config(cfg, tmp_path / "saved.yaml").read_text())
    assert saved["eval"]["target_fpir"] == 0.02 and "target_far" not in saved["eval"]
    with pytest.warns(ConfigDeprecationWarning):  # --set takes the old key too; null still turns it off
        assert load_config(_write(tmp_path, BASE), ["eval.target_far=null"]).eval.target_fpir is None
    with pytest.warns(ConfigDeprecationWarning), pytest.raises(ConfigError, match=r"less than 1"):
        validate_config({**BASE, "eval": {"target_far": 2.0}})  # the alias is checked as a rate too


def test_target_far_and_target_fpir_together_is_an_error(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before any deprecation warning
        with pytest.raises(
            ConfigError, match=r"give eval.target_fpir or its deprecated alias eval.target_far, not both"
        ):
            validate_config({**BASE, "eval": {"target_fpir": 0.05, "target_far": 0.01}})


def test_the_shipped_configs_use_target_fpir_without_warnings():
    import warnings
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(configs) >= 4
    for path in configs:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cfg = load_config(path)
        assert "target_far" not in path.read_text() and 0.0 < cfg.eval.target_fpir < 1.0

from __future__ import annotations

import dataclasses

import pytest

from igtv.config import ConfigError, from_dict, load_config, save_config, shipped_config, to_dict
from igtv.phantom.config import PhantomConfig


def test_yaml_round_trip(tmp_path):
    cfg = PhantomConfig(cohort="gtv", patients=4, seed=3, matrix_scale=0.25)
    path = save_config(cfg, tmp_path / "phantom.yaml")
    assert load_config(PhantomConfig, path) == cfg


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("patients: 3\npatiens: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(PhantomConfig, path)
    assert "patiens" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [("patients", "three"), ("matrix_scale", "big"), ("write_pclt", "yes"), ("cohort", "pet"), ("patients", 2.5)],
)
def test_mistyped_value_names_key(tmp_path, key, value):
    path = tmp_path / "bad.yaml"
    path.write_text(f"{key}: {value!r}\n" if isinstance(value, str) else f"{key}: {value}\n")
    with pytest.raises(ConfigError) as err:
        load_config(PhantomConfig, path)
    assert key in str(err.value) and str(path) in str(err.value)


def test_invalid_value_rejected_by_dataclass():
    with pytest.raises(ConfigError, match="patients"):
        from_dict(PhantomConfig, {"patients": 0}, "x.yaml")


def test_configs_are_frozen():
    cfg = PhantomConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.patients = 3  # type: ignore[misc]
    assert to_dict(cfg)["patients"] == cfg.patients


def test_shipped_configs_load():
    paths = sorted(shipped_config("phantom_gtv.yaml").parent.glob("phantom*.yaml"))
    assert len(paths) == 2
    for path in paths:
        load_config(PhantomConfig, path)


def test_shipped_configs_are_found_from_any_folder(tmp_path, monkeypatch):
    """An installed igtv finds its configs by file name: `--config pretrain_gtv.yaml` from any folder."""
    from igtv.training.config import RunConfig

    monkeypatch.chdir(tmp_path)
    assert load_config(RunConfig, "pretrain_gtv.yaml").stage == "pretrain"
    assert load_config(RunConfig, "configs/finetune_igtv.yaml").stage == "finetune"  # the old spelling
    (tmp_path / "pretrain_gtv.yaml").write_text("stage: finetune\n")  # a user's own file wins
    assert load_config(RunConfig, "pretrain_gtv.yaml").stage == "finetune"
    with pytest.raises(ConfigError, match="no such shipped config"):
        shipped_config("nope.yaml")

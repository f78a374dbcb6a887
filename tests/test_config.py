"""Training config resolution: defaults <- YAML <- demo overrides <- --set <- flags; validation; saving."""

from pathlib import Path

import pytest
import yaml

from emorec import config as cfg
from emorec.errors import ConfigError

YAML = """
model:
  name: e2e_audio
  lstm_units: 256
data:
  window: 6.0
  modalities: [audio]
  batch_size: 25
optimizer:
  name: adam
  learning_rate: 1.0e-4
training:
  epochs: 60
  seed: 0
loss: {}
demo:
  data: {window: 2.0, batch_size: 4}
  training: {epochs: 3}
"""


@pytest.fixture
def yaml_file(tmp_path) -> Path:
    path = tmp_path / "e2e_audio.yaml"
    path.write_text(YAML)
    return path


def test_defaults_fill_missing_keys(yaml_file):
    config = cfg.resolve_config(yaml_file)
    assert config["data"]["shuffle_buffer"] == 256
    assert config["data"]["augment"] is True
    assert config["training"]["steps_per_epoch"] is None
    assert config["training"]["strategy"] == "auto"
    assert config["model"] == {"name": "e2e_audio", "lstm_units": 256}
    assert "demo" not in config
    assert cfg.window_frames(config) == 150


def test_demo_section_only_when_asked(yaml_file):
    plain = cfg.resolve_config(yaml_file)
    demo = cfg.resolve_config(yaml_file, demo=True)
    assert (plain["data"]["window"], plain["data"]["batch_size"], plain["training"]["epochs"]) == (6.0, 25, 60)
    assert (demo["data"]["window"], demo["data"]["batch_size"], demo["training"]["epochs"]) == (2.0, 4, 3)
    # Keys the demo section does not mention keep the YAML's value.
    assert demo["data"]["modalities"] == ["audio"] and demo["optimizer"]["learning_rate"] == 1e-4
    assert cfg.window_frames(demo) == 50


def test_precedence_yaml_demo_set_flags(yaml_file):
    config = cfg.resolve_config(
        yaml_file, demo=True,
        overrides=["training.epochs=7", "optimizer.learning_rate=3e-4", "model.lstm_units=32",
                   "data.batch_size=9"],
        flags={"data": {"batch_size": 2}, "training": {"seed": 5, "epochs": None}},
    )
    assert config["training"]["epochs"] == 7  # --set beats demo; a None flag changes nothing
    assert config["optimizer"]["learning_rate"] == pytest.approx(3e-4)
    assert config["model"]["lstm_units"] == 32
    assert config["data"]["batch_size"] == 2  # the dedicated flag beats --set
    assert config["training"]["seed"] == 5


def test_parse_override_types():
    assert cfg.parse_override("a.b.c=3") == {"a": {"b": {"c": 3}}}
    assert cfg.parse_override("data.modalities=[audio, video]") == {"data": {"modalities": ["audio", "video"]}}
    assert cfg.parse_override("training.steps_per_epoch=null") == {"training": {"steps_per_epoch": None}}
    assert cfg.parse_override("data.augment=false") == {"data": {"augment": False}}
    assert cfg.parse_override("optimizer.learning_rate=3e-4") == {"optimizer": {"learning_rate": 3e-4}}
    for bad in ("training.epochs", "=3", "a..b=1"):
        with pytest.raises(ConfigError, match="key.sub=value"):
            cfg.parse_override(bad)


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.batch_size=0", "data.batch_size"),
        ("data.window=0.05", "whole number"),
        ("data.modalities=[smell]", "data.modalities"),
        ("optimizer.name=sgd", "optimizer.name"),
        ("optimizer.learning_rate=-1", "learning_rate"),
        ("training.epochs=0", "training.epochs"),
        ("training.strategy=tpu", "training.strategy"),
        ("training.max_steps=2.5", "training.max_steps"),
        ("training.epoch=3", "unknown key"),
        ("optimiser.name=adam", "unknown section"),
    ],
)
def test_invalid_settings_raise(yaml_file, override, message):
    with pytest.raises(ConfigError, match=message):
        cfg.resolve_config(yaml_file, overrides=[override])


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: x}\ndata: {batch_size: -3}\n")
    with pytest.raises(ConfigError, match=str(bad)):
        cfg.resolve_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        cfg.resolve_config(broken)
    with pytest.raises(ConfigError, match="model.name"):
        cfg.resolve_config({"data": {"window": 6.0}})
    with pytest.raises(ConfigError, match="not found"):
        cfg.resolve_config(tmp_path / "missing.yaml")


def test_epochs_null_needs_max_steps(yaml_file):
    with pytest.raises(ConfigError, match="max_steps"):
        cfg.resolve_config(yaml_file, overrides=["training.epochs=null"])
    config = cfg.resolve_config(yaml_file, overrides=["training.epochs=null", "training.max_steps=10"])
    assert config["training"]["max_steps"] == 10


def test_saved_config_round_trips(yaml_file, tmp_path):
    config = cfg.resolve_config(yaml_file, demo=True, overrides=["training.epochs=4"])
    path = cfg.save_config(config, tmp_path / "run", {"data_dir": "/d", "demo": True})
    doc = yaml.safe_load(path.read_text())
    assert doc["run"] == {"data_dir": "/d", "demo": True}
    assert "demo" not in doc
    # Reloading the saved file (even in demo mode) reproduces the resolved config exactly.
    assert cfg.resolve_config(path) == config
    assert cfg.resolve_config(path, demo=True) == config
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_repo_configs_resolve():
    directory = cfg.train_config_dir()
    assert directory == Path(cfg.__file__).resolve().parent.parent / "train"
    files = sorted(directory.glob("*.yaml"))
    assert files, f"{directory} holds no training configs"
    for path in files:
        for demo in (False, True):
            config = cfg.resolve_config(path, demo=demo)
            assert config["model"]["name"] == path.stem
    with pytest.raises(ConfigError, match="no training config for model 'no_such_model'"):
        cfg.config_path_for("no_such_model")

"""Typed training configs: defaults <- YAML <- demo section <- --set <- flags; rules checked once; provenance; YAML round trip."""

from pathlib import Path

import pytest
import yaml

from emorec import config as cfg
from emorec.config.base import FieldError, Section, positive_int, setting
from emorec.errors import ConfigError
from emorec.losses import CCCLossConfig
from emorec.models.e2e import E2EAudioConfig
from emorec.objectives import JointLossConfig

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


def test_sections_are_typed_and_defaults_fill_missing_keys(yaml_file):
    config = cfg.resolve_config(yaml_file)
    assert isinstance(config.model, E2EAudioConfig) and isinstance(config.loss, CCCLossConfig)
    assert config.data.hop is None and config.data.target == "all" and config.data.augment is True
    assert config.data.audio_norm == "none"
    assert config.training.steps_per_epoch is None and config.training.strategy == "auto"
    assert config.model.lstm_units == 256 and config.model.recurrent == "peephole"
    assert config.data.modalities == ("audio",)
    assert config.window_frames == 150
    # Frozen: a resolved config cannot drift from what was checked.
    with pytest.raises(AttributeError):
        config.data.batch_size = 3


def test_demo_section_only_when_asked(yaml_file):
    plain = cfg.resolve_config(yaml_file)
    demo = cfg.resolve_config(yaml_file, demo=True)
    assert (plain.data.window, plain.data.batch_size, plain.training.epochs) == (6.0, 25, 60)
    assert (demo.data.window, demo.data.batch_size, demo.training.epochs) == (2.0, 4, 3)
    # Keys the demo section does not mention keep the YAML's value.
    assert demo.data.modalities == ("audio",) and demo.optimizer.learning_rate == 1e-4
    assert demo.window_frames == 50


def test_precedence_yaml_demo_set_flags(yaml_file):
    config = cfg.resolve_config(
        yaml_file, demo=True,
        overrides=["training.epochs=7", "optimizer.learning_rate=3e-4", "model.lstm_units=32",
                   "data.batch_size=9"],
        flags=[("data.batch_size", 2, "--batch-size"), ("training.seed", 5, "--seed")],
    )
    assert config.training.epochs == 7  # --set beats demo
    assert config.optimizer.learning_rate == pytest.approx(3e-4)
    assert config.model.lstm_units == 32
    assert config.data.batch_size == 2  # the dedicated flag beats --set
    assert config.training.seed == 5


def test_errors_name_where_the_value_came_from(yaml_file, tmp_path):
    with pytest.raises(ConfigError, match=r"^--set data\.batch_size=abc: data\.batch_size must be a positive "
                                          r"integer, got 'abc'"):
        cfg.resolve_config(yaml_file, overrides=["data.batch_size=abc"])
    with pytest.raises(ConfigError, match=r"^--batch-size: data\.batch_size"):
        cfg.resolve_config(yaml_file, flags=[("data.batch_size", 0, "--batch-size")])
    bad_demo = tmp_path / "bad_demo.yaml"
    bad_demo.write_text(YAML.replace("window: 2.0", "window: 0.05"))
    with pytest.raises(ConfigError, match=rf"^{bad_demo} \(demo section\): data\.window must be a whole number"):
        cfg.resolve_config(bad_demo, demo=True)
    bad = tmp_path / "bad.yaml"
    bad.write_text(YAML.replace("batch_size: 25", "batch_size: -3"))
    with pytest.raises(ConfigError, match=rf"^{bad}: data\.batch_size"):
        cfg.resolve_config(bad)
    # A value the file set and a flag then fixed is fine.
    assert cfg.resolve_config(bad, flags=[("data.batch_size", 3, "--batch-size")]).data.batch_size == 3


def test_unknown_keys_list_the_known_ones(yaml_file):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) training\.epoch \(known: epochs, "):
        cfg.resolve_config(yaml_file, overrides=["training.epoch=3"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) model\.lstm_unitz \(known: .*lstm_units"):
        cfg.resolve_config(yaml_file, overrides=["model.lstm_unitz=3"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) loss\.gamma \(known: \)"):
        cfg.resolve_config(yaml_file, overrides=["loss.gamma=1"])
    with pytest.raises(ConfigError, match="unknown section"):
        cfg.resolve_config(yaml_file, overrides=["optimiser.name=adam"])
    with pytest.raises(ConfigError, match="unknown model 'nope'; available: .*e2e_audio"):
        cfg.resolve_config(yaml_file, overrides=["model.name=nope"])


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
        ("data.modalities=[smell]", r"data.modalities\[0\]"),
        ("data.modalities=[audio, audio]", "twice"),
        ("optimizer.name=sgd", "optimizer.name"),
        ("optimizer.learning_rate=-1", "learning_rate"),
        ("optimizer.beta_1=1.0", "below 1"),
        ("training.epochs=0", "training.epochs"),
        ("training.strategy=tpu", "training.strategy"),
        ("training.max_steps=2.5", "training.max_steps"),
        ("training.checkpoints=never", "training.checkpoints"),
        ("model.recurrent=gru", "model.recurrent"),
        ("model.audio_dropout=1.0", r"model.audio_dropout must be a number in \[0, 1\)"),
        ("training.stateful=true", "stream_ordered"),
        ("data.modalities=[video]", "model e2e_audio reads"),
    ],
)
def test_invalid_settings_raise(yaml_file, override, message):
    with pytest.raises(ConfigError, match=message):
        cfg.resolve_config(yaml_file, overrides=[override])


def test_cross_field_rule_of_a_model_family(yaml_file):
    with pytest.raises(ConfigError, match="forget_bias must be 0 or 1 with recurrent: keras"):
        cfg.resolve_config(yaml_file, overrides=["model.recurrent=keras", "model.forget_bias=2.0"])


def test_errors_name_the_file(tmp_path):
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
    assert config.training.max_steps == 10


def test_saved_config_round_trips(yaml_file, tmp_path):
    config = cfg.resolve_config(yaml_file, demo=True, overrides=["training.epochs=4"])
    path = config.save(tmp_path / "run", {"data_dir": "/d", "demo": True})
    doc = yaml.safe_load(path.read_text())
    assert doc["run"] == {"data_dir": "/d", "demo": True}
    assert "demo" not in doc and list(doc["model"])[0] == "name"
    # Reloading the saved file (even in demo mode) reproduces the resolved config exactly.
    again = cfg.resolve_config(path)
    assert again.to_dict() == {**config.to_dict(), "run": doc["run"]}
    assert cfg.resolve_config(path, demo=True).model == config.model
    assert cfg.load_run_config(tmp_path / "run").data == config.data
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_with_overrides_checks_again(yaml_file):
    config = cfg.resolve_config(yaml_file)
    assert config.with_overrides(["data.batch_size=3"]).data.batch_size == 3
    with pytest.raises(ConfigError, match="--set data.batch_size=0"):
        config.with_overrides(["data.batch_size=0"])


def test_section_rules_in_isolation():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Demo(Section):
        SECTION = "demo_section"
        count: int = setting(2, positive_int)

        def check(self):
            if self.count == 13:
                raise FieldError("count", "is unlucky")

    assert Demo.from_dict({"count": 4}).count == 4
    with pytest.raises(ConfigError, match=r"^here: demo_section\.count is unlucky"):
        Demo.from_dict({"count": 13}, "here")
    with pytest.raises(ConfigError, match=r"demo_section\.count must be a positive integer, got True"):
        Demo.from_dict({"count": True})
    assert JointLossConfig.from_dict(None) == JointLossConfig()


def test_repo_configs_resolve():
    directory = cfg.train_config_dir()
    assert directory == Path(cfg.__file__).resolve().parent.parent.parent / "train"
    files = sorted(directory.glob("*.yaml"))
    assert files, f"{directory} holds no training configs"
    for path in files:
        for demo in (False, True):
            config = cfg.resolve_config(path, demo=demo)
            assert config.model_name == path.stem
            # Every paper YAML follows the releases' TF 1 Adam epsilon.
            assert config.optimizer.epsilon == 1e-8, path
    with pytest.raises(ConfigError, match="no training config for model 'no_such_model'"):
        cfg.config_path_for("no_such_model")

"""Typed configuration: the training config (``train/NAME.yaml``) and the machinery every section shares.

See :mod:`emorec.config.base` (sections, rules, origins, YAML),
:mod:`emorec.config.sections` (``data``, ``optimizer``, ``training``) and
:mod:`emorec.config.train_config` (resolution and the run's ``config.yaml``).
"""

from emorec.config.base import (
    FieldError,
    Origins,
    Section,
    deep_merge,
    dump_yaml,
    parse_override,
    read_yaml,
    setting,
)
from emorec.config.sections import (
    CHECKPOINT_POLICIES,
    OPTIMIZERS,
    STRATEGIES,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    TrainingConfig,
)
from emorec.config.train_config import (
    TrainConfig,
    config_path_for,
    load_run_config,
    resolve_config,
    train_config_dir,
)

__all__ = [
    "CHECKPOINT_POLICIES",
    "OPTIMIZERS",
    "STRATEGIES",
    "DataConfig",
    "FieldError",
    "ModelConfig",
    "OptimizerConfig",
    "Origins",
    "Section",
    "TrainConfig",
    "TrainingConfig",
    "config_path_for",
    "deep_merge",
    "dump_yaml",
    "load_run_config",
    "parse_override",
    "read_yaml",
    "resolve_config",
    "setting",
    "train_config_dir",
]

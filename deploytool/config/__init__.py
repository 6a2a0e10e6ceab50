"""Project configuration: frozen dataclasses (config.schema), read from deploytool.toml or [tool.deploytool]
(config.loading). Every name is importable from here: `from deploytool.config import QuantConfig, load_config`.

Precedence, lowest first: defaults, the config file, flags. Unknown keys and wrong types are
`ConfigError`s that name the file and the field.
"""
from deploytool.config.loading import (CONFIG_FILE, MODELS_KEY, RECORDED_RUN, find_config, load_config,
                                       load_projects, parse_config)
from deploytool.config.schema import (DTYPES, IMAGENET, Activations, BaselineConfig, Color, DataConfig, DynamicDim,
                                      InputSpec, Layout, Observer, OnnxCalibration, ParityConfig, Precision,
                                      Preprocess, ProjectConfig, QuantConfig, ScriptCapture, Thresholds, to_plain)
from deploytool.errors import ConfigError

__all__ = [
    "CONFIG_FILE", "MODELS_KEY", "RECORDED_RUN", "find_config", "load_config", "load_projects", "parse_config",
    "DTYPES", "IMAGENET", "Activations", "BaselineConfig", "Color", "DataConfig", "DynamicDim", "InputSpec", "Layout",
    "Observer",
    "OnnxCalibration", "ParityConfig", "Precision", "Preprocess", "ProjectConfig", "QuantConfig", "ScriptCapture",
    "Thresholds", "to_plain", "ConfigError",
]

"""The config language: loading, models, schema and validation."""

from engine.config.models import Config
from engine.config.problems import Problem
from engine.config.validate import LoadedConfig, load_config, validate_paths

__all__ = ["Config", "LoadedConfig", "Problem", "load_config", "validate_paths"]

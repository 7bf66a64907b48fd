"""The config language: loading, models, schema and validation (the ground floor: configs only)."""

from engine.config.models import Config
from engine.config.problems import Problem
from engine.config.validate import LoadedConfig, load_config

__all__ = ["Config", "LoadedConfig", "Problem", "load_config"]

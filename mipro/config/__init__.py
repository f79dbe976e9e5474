"""TOML configuration → validated, frozen objects; every error names file, key and problem."""

from .loader import ConfigError
from .schema import HaConfig, MnConfig, load_ha, load_mn, load_role

__all__ = ["ConfigError", "HaConfig", "MnConfig", "load_ha", "load_mn", "load_role"]

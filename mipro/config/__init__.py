"""TOML configuration → validated, frozen objects; every error names file, key and problem."""

from .loader import ConfigError
from .schema import FaConfig, HaConfig, MnConfig, load_fa, load_ha, load_mn, load_role

__all__ = ["ConfigError", "FaConfig", "HaConfig", "MnConfig", "load_fa", "load_ha", "load_mn",
           "load_role"]

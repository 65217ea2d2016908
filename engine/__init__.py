"""smbench's reference GPT-2 engine in NumPy. Imports nothing from the harness."""
from .api import Model, from_config, load, save
from .config import PRESETS, ModelConfig, preset
from .errors import CheckpointError, ConfigError, EngineError, FlagError, InputError, TokenizerError
from .flags import EXACT_FLAGS, FLAG_HELP, OptFlags, all_flag_sets

__all__ = ["Model", "load", "save", "from_config", "ModelConfig", "PRESETS", "preset", "OptFlags",
           "all_flag_sets", "FLAG_HELP", "EXACT_FLAGS", "EngineError", "ConfigError", "FlagError",
           "CheckpointError", "TokenizerError", "InputError"]

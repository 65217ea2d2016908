"""Errors the engine raises for bad input. Each message names the problem and the fix."""


class EngineError(ValueError):
    """Base class: a user-facing problem with a config, flag, checkpoint or input."""


class ConfigError(EngineError):
    pass


class FlagError(EngineError):
    pass


class CheckpointError(EngineError):
    pass


class TokenizerError(EngineError):
    pass


class InputError(EngineError):
    pass

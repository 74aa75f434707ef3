"""Errors the engine raises. Callers map them to their own world (HTTP codes, job states)."""


class EngineError(Exception):
    """Base class of everything the engine raises on purpose."""


class InvalidSetting(EngineError):
    """An engine setting has a value the engine cannot use (e.g. an unknown weight format)."""


class InvalidRequest(EngineError):
    """The request itself is malformed (unknown role, unreadable image, ...)."""


class RequestTooLong(InvalidRequest):
    """The prompt, images included, is longer than the engine accepts."""


class EngineOverloaded(EngineError):
    """Too many requests are waiting; try again later."""


class EngineNotReady(EngineError):
    """The model is still loading, failed to load, or the engine was shut down."""


class ModelLoadError(EngineError):
    """The model could not be loaded; the message says what to fix (no transformers stack trace)."""


class ModelNotFound(ModelLoadError):
    """`VISION_MODEL` names a folder that does not exist, or a hub id that cannot be fetched."""


class IncompleteCheckpoint(ModelLoadError):
    """The model folder exists but lacks files a checkpoint needs (`missing` names them)."""

    def __init__(self, path: str, missing: list[str]):
        self.path = path
        self.missing = missing
        super().__init__(f"model folder {path} is incomplete: missing {', '.join(missing)}")

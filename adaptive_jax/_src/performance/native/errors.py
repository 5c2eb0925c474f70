"""Why a step stays on XLA: the native path's two exceptions."""


class NativeUnavailable(RuntimeError):
    """Native kernels cannot be used here (the message says why); the step runs on XLA.

    Every failure of finding a compiler, compiling, caching, checking or loading a
    library becomes this exception, so a caller catches one type and falls back.
    """


class Unsupported(Exception):
    """The step has an operation, shape or dtype the translation does not cover."""

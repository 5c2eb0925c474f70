"""The one exception of the native step's build: the reason it stays on XLA."""


class NativeUnavailable(RuntimeError):
    """Native kernels cannot be used here (the message says why); the step runs on XLA.

    Every failure of finding a compiler, compiling, caching, checking or loading a
    library becomes this exception, so a caller catches one type and falls back.
    """

"""Shared helper of the import-only stand-ins: any use raises."""


def unavailable(qualname: str):
    """A callable/class placeholder named `qualname` whose every use raises RuntimeError."""

    class _Unavailable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(
                f"{qualname} is a CPU test stand-in (tests/gpu_stubs); install the real package on a GPU node"
            )

        def __init_subclass__(cls, **kwargs):
            raise RuntimeError(f"{qualname} is a CPU test stand-in and cannot be subclassed")

    _Unavailable.__name__ = _Unavailable.__qualname__ = qualname.rsplit(".", 1)[-1]
    return _Unavailable

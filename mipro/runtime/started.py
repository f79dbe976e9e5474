"""``Started``: a daemon attribute that exists once ``run()`` made it."""

from __future__ import annotations

from typing import Generic, Self, TypeVar, overload

T = TypeVar("T")


class Started(Generic[T]):
    """A daemon attribute that ``run()`` sets once it exists (a socket, the dataplane):

        udp = Started[socket.socket]()

    Reading it before then raises a RuntimeError that names it, where ``X | None``
    would need a check at every use (the daemon's callbacks only run after ``run()``
    set what they use) or fail later as "'NoneType' object has no attribute"."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> T | Self:
        if obj is None:
            return self
        try:
            return vars(obj)[self.name]
        except KeyError:
            raise RuntimeError(f"{type(obj).__name__}.{self.name} used before run() "
                               "set it") from None

    def __set__(self, obj: object, value: T) -> None:
        vars(obj)[self.name] = value

    def peek(self, obj: object) -> T | None:
        """The value, or None before ``run()`` set it: for what may be asked at any time
        (status, metrics), as ``type(self).dataplane.peek(self)``."""
        return vars(obj).get(self.name)

"""Codes to classes, one registry per numbering space, and a duplicate code is a bug.

Every decoder in mipro.wire finds the class for a code here: message types on
UDP port 434, registration extension types, ICMP advertisement extension
types, mipro's vendor (NVSE) types and experimental sub-types.  Registering a
code twice raises at import time, so two classes can never silently claim one
number (as ExaBGP's ``Message.register`` refuses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from .extensions import DecodeContext, Extension
    from .reader import Reader

T = TypeVar("T")


class VendorDecoder(Protocol):
    """A mipro NVSE class: decodes the value after the NVSE header."""

    VENDOR_TYPE: int

    def decode_value(self, r: Reader, vendor_id: int, /) -> Extension: ...


class AdvertDecoder(Protocol):
    """An ICMP agent advertisement extension class."""

    def decode_body(self, r: Reader, /) -> Extension: ...


class MessageDecoder(Protocol):
    """A message class (or a decoder of a family of them) on UDP port 434."""

    TYPE: int

    def decode(self, data: bytes, ctx: DecodeContext, /) -> object: ...


class Registry(Generic[T]):
    def __init__(self, space: str) -> None:
        self.space = space
        self._by_code: dict[int, T] = {}

    def add(self, code: int, item: T) -> T:
        if code in self._by_code:
            raise ValueError(f"{self.space}: code {code} is already {self._by_code[code]!r}, "
                             f"cannot also be {item!r}")
        self._by_code[code] = item
        return item

    def register(self, code: int) -> Callable[[T], T]:
        """Class decorator: ``@REGISTRY.register(CODE)``."""
        return lambda item: self.add(code, item)

    def get(self, code: int) -> T | None:
        return self._by_code.get(code)

    def __contains__(self, code: int) -> bool:
        return code in self._by_code

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._by_code))

    def items(self) -> list[tuple[int, T]]:
        return sorted(self._by_code.items(), key=lambda kv: kv[0])


#: registration extensions by type (RFC 5944 §1.9 and the RFCs that extend it)
EXTENSIONS: Registry[type[Extension]] = Registry("registration extension type")
#: mipro's NVSE payloads by Vendor-NVSE-Type (under its Vendor/Org-ID)
VENDOR_EXTENSIONS: Registry[VendorDecoder] = Registry("mipro vendor extension type")
#: ICMP agent advertisement extensions by type (RFC 5944 §2.1)
ADVERT_EXTENSIONS: Registry[AdvertDecoder] = Registry("advertisement extension type")
#: messages on UDP port 434 by type
UDP434_MESSAGES: Registry[MessageDecoder] = Registry("mobile IP message type")
#: mipro's RFC 4064 experimental messages by sub-type
EXPERIMENTAL_MESSAGES: Registry[MessageDecoder] = \
    Registry("mipro experimental message sub-type")

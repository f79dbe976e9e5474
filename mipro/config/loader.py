"""A small checker that collects every configuration error before giving up."""

from __future__ import annotations

import base64
import os
import stat
import tomllib
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, TypeVar, overload

MIN_KEY_BYTES = 16  # the shortest key a store or configuration file may hold


class ConfigError(Exception):
    """All problems found in one file, each as ``file: key: problem``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: not UTF-8 (byte {exc.start})"]) from None


def file_problem(path: str | Path) -> str | None:
    """Why a file a configuration names cannot be read (None if it can): for an error
    ``CONFIG: KEY: PATH: PROBLEM``."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            return "is a directory, not a file"
        if not stat.S_ISREG(mode):
            return "is not a regular file"
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    return None


def check_not_world_readable(path: str | Path, what: str) -> None:
    """Secrets must not be readable by others (mode o+r)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError([f"{path}: {what} is readable by others (mode "
                           f"{stat.S_IMODE(mode):04o}); chmod o-rw {path}"])


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # a key without a default: missing is an error
T = TypeVar("T")
D = TypeVar("D")
# what a getter returns for a required key that is missing or wrong (the error is recorded,
# and ``done()`` refuses the file, so the value is never used): a value of the right type
PLACEHOLDER: dict[type, Any] = {int: 0, float: 0.0, str: "", bool: False, list: [], dict: {}}


class Checker:
    """Reads typed values by key path from parsed TOML, recording what is wrong.

    Each getter returns a value of its type (or the given default): when a value is
    missing or wrong the problem is recorded and a placeholder of that type comes back,
    so every problem of a file is found in one pass and ``done()`` then refuses it."""

    def __init__(self, path: str | Path, data: dict[str, Any]) -> None:
        self.path = str(path)
        self.data = data
        self.errors: list[str] = []
        self.known: set[str] = set()

    def error(self, key: str, problem: str) -> None:
        self.errors.append(f"{self.path}: {key}: {problem}")

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        self.known.add(key)
        node: Any = self.data
        for part in key.split("."):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                if default is REQUIRED:
                    self.error(key, "missing")
                    return None
                return default
        return node

    @overload
    def get(self, key: str, kind: type[T], default: _Required = ...,
            check: Callable[[T], str | None] | None = None) -> T: ...

    @overload
    def get(self, key: str, kind: type[T], default: D,
            check: Callable[[T], str | None] | None = None) -> T | D: ...

    def get(self, key: str, kind: type[Any], default: Any = REQUIRED,
            check: Callable[[Any], str | None] | None = None) -> Any:
        return self._get(key, (kind,), default, check)

    def _get(self, key: str, kinds: tuple[type, ...], default: Any,
             check: Callable[[Any], str | None] | None) -> Any:
        fallback = PLACEHOLDER.get(kinds[0]) if default is REQUIRED else default
        value = self.raw(key, default)
        if value is default:
            return value
        if value is None:  # a required key, missing: recorded by raw()
            return fallback
        if isinstance(value, bool) and bool not in kinds:
            self.error(key, f"expected {_kind_name(kinds)}, got a boolean")
            return fallback
        if not isinstance(value, kinds):
            self.error(key, f"expected {_kind_name(kinds)}, got {type(value).__name__} "
                            f"{value!r}")
            return fallback
        if check is not None and (problem := check(value)):
            self.error(key, problem)
        return value

    @overload
    def integer(self, key: str, default: _Required = ..., lo: int | None = None,
                hi: int | None = None) -> int: ...

    @overload
    def integer(self, key: str, default: D, lo: int | None = None,
                hi: int | None = None) -> int | D: ...

    def integer(self, key: str, default: Any = REQUIRED, lo: int | None = None,
                hi: int | None = None) -> Any:
        def rng(v: int) -> str | None:
            if lo is not None and v < lo:
                return f"{v} is below the minimum {lo}"
            if hi is not None and v > hi:
                return f"{v} is above the maximum {hi}"
            return None
        return self.get(key, int, default, rng)

    def number(self, key: str, default: float, lo: float = 0.0,
               hi: float = float("inf")) -> float:
        value = self._get(key, (int, float), default,
                          lambda v: f"{v} is below {lo}" if v < lo else
                          f"{v} is above {hi}" if v > hi else None)
        return float(value)

    @overload
    def choice(self, key: str, choices: tuple[str, ...], default: _Required = ...) -> str: ...

    @overload
    def choice(self, key: str, choices: tuple[str, ...], default: D) -> str | D: ...

    def choice(self, key: str, choices: tuple[str, ...], default: Any = REQUIRED) -> Any:
        """One of ``choices`` (or the default): a wrong value is recorded and the first
        choice stands in, never a value that callers would turn into an enum and fail on."""
        value = self.get(key, str, default,
                         lambda v: None if v in choices else
                         f"{v!r} is not one of {', '.join(choices)}")
        if value in choices or value is default:
            return value
        return default if default is not REQUIRED else choices[0]

    def _parse(self, key: str, default: Any, parser: Callable[[str], T], what: str,
               placeholder: T) -> Any:
        value = self.get(key, str, default)
        if value is default and default is not REQUIRED:
            return value
        try:
            return parser(value)
        except ValueError as exc:
            if value:  # an empty string is a missing key's placeholder: said already
                self.error(key, f"{value!r} is not {what} ({exc})")
            return placeholder

    @overload
    def address(self, key: str, default: _Required = ...) -> IPv4Address: ...

    @overload
    def address(self, key: str, default: D) -> IPv4Address | D: ...

    def address(self, key: str, default: Any = REQUIRED) -> Any:
        return self._parse(key, default, IPv4Address, "an IPv4 address", IPv4Address(0))

    def network(self, key: str) -> IPv4Network:
        return self._parse(key, REQUIRED, IPv4Network, "an IPv4 prefix like 10.1.0.0/24",
                           IPv4Network("0.0.0.0/32"))

    def interface_address(self, key: str, default: None) -> IPv4Interface | None:
        return self._parse(key, default, IPv4Interface,
                           "an address with prefix like 198.51.100.9/24",
                           IPv4Interface("0.0.0.0/32"))

    def key_bytes(self, key: str) -> bytes:
        """Keys are written ``hex:…``, ``base64:…`` or ``text:…``."""
        value = self.get(key, str)
        if not value:
            return b""  # missing: recorded
        kind, _, text = value.partition(":")
        try:
            if kind == "hex":
                raw = bytes.fromhex(text)
            elif kind == "base64":
                raw = base64.b64decode(text, validate=True)
            elif kind == "text":
                raw = text.encode()
            else:
                self.error(key, "must start with hex:, base64: or text:")
                return b""
        except ValueError as exc:
            self.error(key, f"cannot decode the {kind} key ({exc})")
            return b""
        if len(raw) < MIN_KEY_BYTES:
            self.error(key, f"key of {len(raw)} bytes is too short (at least {MIN_KEY_BYTES})")
        return raw

    def unknown_keys(self, allowed: dict[str, set[str]]) -> None:
        """Flag typos: keys in a known table that no one reads."""
        for table, keys in allowed.items():
            node: Any = self.data
            for part in table.split(".") if table else ():
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict):
                for k in node:
                    if k not in keys:
                        self.error(f"{table + '.' if table else ''}{k}", "unknown key")

    def done(self) -> None:
        if self.errors:
            raise ConfigError(self.errors)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)

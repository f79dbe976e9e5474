"""Subscribers from LDAP (ldap3): the seed's mobile service manager (Figs. 6a, 12a).

Entries carry the auxiliary class ``miproMobileNode`` (conf/mipro.schema).
Anything the store cannot answer — server down, TLS failure, an entry whose
values do not parse — raises StoreUnavailable, which the home agent turns
into a denial (130) with the reason logged: a mobile node is never
registered without its policy.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from ..config.loader import MIN_KEY_BYTES
from ..policy.profile import ProfileError, parse_filter, parse_route
from ..security import Algorithm, SecurityAssociation
from ..security.replay import ReplayMethod
from .model import StoreUnavailable, Subscriber

ATTRIBUTES = ["miproHomeAddress", "miproNAI", "miproSecurityAssociation", "miproMaxLifetime",
              "miproReplay", "miproRoute", "miproFilter"]


@dataclass(frozen=True)
class LdapSettings:
    url: str  # ldap://host:389 or ldaps://host:636
    base_dn: str
    bind_dn: str | None = None
    password: str | None = None
    starttls: bool = False
    ca_file: str | None = None
    timeout: float = 3.0


def _key(text: str) -> bytes:
    """A key as the file store writes it, held to the same minimum length."""
    kind, _, value = text.partition(":")
    if kind == "hex":
        raw = bytes.fromhex(value)
    elif kind == "text":
        raw = value.encode()
    elif kind == "base64":
        raw = base64.b64decode(value, validate=True)
    else:
        raise ValueError("key must start with hex:, base64: or text:")
    if len(raw) < MIN_KEY_BYTES:
        raise ValueError(f"key of {len(raw)} bytes is too short (at least {MIN_KEY_BYTES})")
    return raw


def _association(text: str) -> SecurityAssociation:
    """``SPI ALGORITHM KEY``; ValueError naming the attribute (never the key) if not."""
    parts = text.split()
    spi = parts[0] if parts else "?"
    try:
        if len(parts) != 3:
            raise ValueError(f"{len(parts)} fields, expected SPI ALGORITHM KEY")
        return SecurityAssociation(int(parts[0]), _key(parts[2]), Algorithm(parts[1]))
    except ValueError as exc:
        raise ValueError(f"miproSecurityAssociation (SPI {spi}): {exc}") from None


def _ordered(values: list[str]) -> list[str]:
    """Multi-valued attributes have no order in LDAP: values start with their position."""
    def pos(v: str) -> int:
        return int(v.split(None, 1)[0])
    return [v.split(None, 1)[1] if " " in v else "" for v in sorted(values, key=pos)]


def _pairs(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep:
            raise ProfileError(item, "expected key=value")
        out[key] = {"true": True, "false": False}.get(value, value)
    return out


def parse_entry(dn: str, attrs: dict[str, list[str]]) -> Subscriber:
    """An LDAP entry as a Subscriber; ValueError (with the attribute) on garbage."""
    def many(name: str) -> list[str]:
        value = attrs.get(name)  # ldap3 gives single-valued attributes as plain values
        if value is None or value == []:
            return []
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]

    def one(name: str, default: str | None = None) -> str:
        values = many(name)
        if not values:
            if default is None:
                raise ValueError(f"{dn}: {name} missing")
            return default
        return str(values[0])

    try:
        home = IPv4Address(one("miproHomeAddress"))
        assocs = {}
        for value in many("miproSecurityAssociation"):
            sa = _association(str(value))
            assocs[sa.spi] = sa
        routes = []
        for text in _ordered(many("miproRoute")):
            dest, _, rest = text.partition(" ")
            routes.append(parse_route({"destination": dest, **_pairs(rest)} |
                                      {"cost": int(_pairs(rest).get("cost", 10))}))
        filters = [parse_filter(_pairs(t)) for t in
                   _ordered(many("miproFilter"))]
        return Subscriber(home, one("miproNAI", ""), assocs,
                          int(one("miproMaxLifetime", "3600")),
                          ReplayMethod(one("miproReplay", "timestamp")), tuple(routes),
                          tuple(filters))
    except ProfileError as exc:
        raise ValueError(f"{dn}: miproRoute/miproFilter {exc.key}: {exc.problem}") from None
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{dn}: {exc}") from None


class LdapStore:
    def __init__(self, settings: LdapSettings) -> None:
        self.s = settings
        tls = None
        if settings.url.startswith("ldaps://") or settings.starttls:
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ca_file,
                            version=ssl.PROTOCOL_TLS_CLIENT)
        self.server = ldap3.Server(settings.url, use_ssl=settings.url.startswith("ldaps://"),
                                   tls=tls, connect_timeout=settings.timeout)
        self.local = threading.local()  # lookups run in worker threads: a connection each
        self.opened: list[ldap3.Connection] = []

    @property
    def conn(self) -> ldap3.Connection | None:
        return getattr(self.local, "conn", None)

    @conn.setter
    def conn(self, value: ldap3.Connection | None) -> None:
        self.local.conn = value

    def _connect(self) -> ldap3.Connection:
        if self.conn is not None and self.conn.bound:
            return self.conn
        conn = ldap3.Connection(self.server, user=self.s.bind_dn, password=self.s.password,
                                receive_timeout=max(1, round(self.s.timeout)),
                                raise_exceptions=True,
                                auto_bind=ldap3.AUTO_BIND_NONE)
        conn.open()
        if self.s.starttls:
            conn.start_tls()
        conn.bind()
        self.conn = conn
        self.opened.append(conn)
        return conn

    def lookup(self, home_address: IPv4Address, nai: str | None = None) -> Subscriber | None:
        """By NAI when the request has one, else by home address: never either-or, or a
        subscriber could name somebody else's address next to its own NAI."""
        if nai:
            flt = f"(&(objectClass=miproMobileNode)(miproNAI={escape_filter_chars(nai)}))"
        else:
            flt = f"(&(objectClass=miproMobileNode)(miproHomeAddress={home_address}))"
        try:
            conn = self._connect()
            conn.search(self.s.base_dn, flt, attributes=ATTRIBUTES, size_limit=2)
            entries = list(conn.response or [])
        except (LDAPException, OSError) as exc:
            if self.conn in self.opened:
                self.opened.remove(self.conn)
            self.conn = None
            raise StoreUnavailable(f"{self.s.url}: {exc}") from None
        entries = [e for e in entries if e.get("type") == "searchResEntry"]
        if not entries:
            return None
        if len(entries) > 1:
            raise StoreUnavailable(f"{self.s.url}: {len(entries)} entries for "
                                   f"{nai or home_address}")
        try:
            return parse_entry(entries[0]["dn"], entries[0]["attributes"])
        except ValueError as exc:
            raise StoreUnavailable(f"{self.s.url}: bad entry {exc}") from None

    def close(self) -> None:
        for conn in self.opened:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()
        self.opened.clear()
        self.local = threading.local()

"""The configuration of each daemon, as frozen dataclasses built from TOML."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, ip_address
from pathlib import Path

from ..dataplane import BACKENDS
from ..security import Algorithm, SecurityAssociation
from ..security.replay import ReplayMethod
from .loader import Checker, ConfigError, check_not_world_readable, file_problem, read_toml

ALGORITHMS = tuple(a.value for a in Algorithm)
REPLAY = tuple(r.value for r in ReplayMethod)


@dataclass(frozen=True)
class DataplaneConfig:
    backend: str = "auto"
    table: int = 434
    rule_priority: int = 1000
    tunnel_interface: str = "mip0"


@dataclass(frozen=True)
class RuntimeConfig:
    control_socket: str
    state_file: str | None = None
    log_level: str = "info"
    metrics_listen: tuple[str, int] | None = None  # (address, port); None: no metrics


@dataclass(frozen=True)
class LimitsConfig:
    """[ha.limits]: budgets for work before authentication (docs/security.md)."""

    per_source: float = 50.0  # requests/s from one source not yet seen to authenticate
    per_source_burst: float = 100.0
    unknown_sources: float = 2000.0  # requests/s from all such sources together
    unsigned_replies: float = 200.0  # answers/s to requests that did not authenticate
    kernel: bool = True  # also drop the excess in the kernel, before it is queued


@dataclass(frozen=True)
class GroupConfig:
    """[[redundancy.group]]: one virtual home agent address held by a keepalived
    vrrp_instance."""

    vrid: int
    address: IPv4Address
    instance: str
    track_file: str
    priority: int = 100
    advert_interval: int = 1


@dataclass(frozen=True)
class RedundancyConfig:
    """[redundancy]: two home agents for one (or, active/active, two) virtual address."""

    local_address: IPv4Address  # this home agent's own address: the sync session's
    peer_address: IPv4Address
    key: bytes = field(repr=False)
    groups: tuple[GroupConfig, ...]
    port: int = 4340
    notify_fifo: str = "/run/mipro/keepalived.fifo"
    keepalived_conf: str = "/etc/keepalived/keepalived.conf"
    alone_after: float = 10.0
    process_name: str = "mipro-ha"  # what keepalived's vrrp_track_process watches
    # keepalived's VRRP process's pid file (its --vrrp_pid): watched, so that a keepalived
    # killed without a word makes us stand down; None: not watched
    keepalived_pid_file: str | None = None


@dataclass(frozen=True)
class HaConfig:
    path: str
    address: IPv4Address
    home_interface: str
    home_network: IPv4Network
    max_lifetime: int
    replay_window: float
    encapsulations: frozenset[str]
    reverse_tunneling: bool
    vendor_id: int
    subscriber_store: str
    subscribers_file: str | None
    fa_peers: dict[IPv4Address, SecurityAssociation]
    dataplane: DataplaneConfig
    runtime: RuntimeConfig
    proxy_arp: str = "per-binding"
    kernel_tunnels: str = "per-care-of"
    ldap: dict | None = None  # url, base_dn, bind_dn, password, starttls, ca_file, timeout
    advertise: bool = True
    advertisement_interval: float = 1.0
    udp_tunnelling: bool = True
    udp_keepalive: int = 110
    limits: LimitsConfig = LimitsConfig()
    redundancy: RedundancyConfig | None = None
    role: str = "ha"

    @property
    def addresses(self) -> tuple[IPv4Address, ...]:
        """Every home agent address served: ha.address and the redundancy groups'."""
        extra = [g.address for g in self.redundancy.groups] if self.redundancy else []
        return tuple(dict.fromkeys([self.address, *extra]))


@dataclass(frozen=True)
class MnConfig:
    path: str
    home_address: IPv4Address
    home_agent: IPv4Address
    home_network: IPv4Network
    nai: str
    sa: SecurityAssociation
    replay: ReplayMethod
    lifetime: int
    reverse_tunnel: bool
    encapsulation: str
    interface: str
    care_of: str  # dhcp | static
    static_address: IPv4Interface | None
    gateway: IPv4Address | None
    vendor_id: int
    dataplane: DataplaneConfig
    runtime: RuntimeConfig
    mode: str = "colocated"
    discovery_wait: float = 1.0
    home_gateway: IPv4Address | None = None
    solicit_on_attach: bool = True
    tunnel_ports: tuple[tuple[str, int, int], ...] = ()
    fa_peers: dict[IPv4Address, SecurityAssociation] = field(default_factory=dict)
    notify_previous_fa: bool = True
    udp_tunnel: str = "auto"
    forwarding_lifetime: int = 10
    role: str = "mn"


# Each role's own route tables and rule priorities by default, so that a home agent and a
# foreign agent on one host never touch each other's (the FA's span table .. table + 8447
# and rule_priority - 3 .. rule_priority, see dataplane/fa/agent.py).
TABLES = {"ha": (434, 1000), "mn": (434, 1000), "fa": (1434, 900)}


def _dataplane(c: Checker, role: str) -> DataplaneConfig:
    table, priority = TABLES[role]
    return DataplaneConfig(
        backend=c.choice("dataplane.backend", BACKENDS, "auto"),
        table=c.integer("dataplane.table", table, 1, 2**31 - 1),
        rule_priority=c.integer("dataplane.rule_priority", priority,
                                4 if role == "fa" else 1, 32765),
        tunnel_interface=c.get("dataplane.tunnel_interface", str, "mip0",
                               lambda v: None if 0 < len(v) < 16 else "1 to 15 characters"),
    )


def _runtime(c: Checker, role: str) -> RuntimeConfig:
    return RuntimeConfig(
        control_socket=c.get("runtime.control_socket", str, f"/run/mipro/{role}.sock"),
        state_file=c.get("runtime.state_file", str,
                         f"/var/lib/mipro/{role}-bindings.json" if role == "ha" else None),
        log_level=c.choice("runtime.log_level", ("debug", "info", "warning", "error"), "info"),
        metrics_listen=_listen(c, "runtime.metrics_listen"),
    )


def _listen(c: Checker, key: str) -> tuple[str, int] | None:
    """"ADDRESS:PORT" (an IPv6 address in brackets, "[::1]:9434") → (address, port).
    An address is required: all addresses ("0.0.0.0", "[::]") only when written so."""
    text = c.get(key, str, None)
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        ip: IPv4Address | IPv6Address | None = ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        ip = None
    if ip is None or not port.isdigit() or (ip.version == 6) != bracketed:
        c.error(key, f"{text!r} is not ADDRESS:PORT like \"127.0.0.1:9434\" or "
                     "\"[::1]:9434\"")
        return None
    if not 0 < int(port) <= 65535:
        c.error(key, f"port {port} is not 1 to 65535")
        return None
    return str(ip), int(port)


def _sa(c: Checker, prefix: str) -> SecurityAssociation | None:
    spi = c.integer(f"{prefix}.spi", REQUIRED_SPI, 256, 2**32 - 1)
    key = c.key_bytes(f"{prefix}.key")
    alg = c.choice(f"{prefix}.algorithm", ALGORITHMS, "hmac-md5")
    if isinstance(spi, int) and isinstance(key, bytes) and isinstance(alg, str):
        return SecurityAssociation(spi, key, Algorithm(alg))
    return None


REQUIRED_SPI = 256  # SPIs 0-255 are reserved (RFC 5944 §1.6); a missing SPI defaults to 256


MAX_CACHE = 20_000_000  # subscribers.ldap.cache_size: ~0.66 KB each, ~13 GB at most


def _ldap(c: Checker) -> dict | None:
    """[subscribers.ldap]: where the mobile service manager's directory is."""
    url = c.get("subscribers.ldap.url", str, None,
                lambda v: None if v.startswith(("ldap://", "ldaps://")) else
                "must start with ldap:// or ldaps://")
    if url is None:
        c.error("subscribers.ldap.url", "missing (required when store = \"ldap\")")
        return None
    password = None
    password_file = c.get("subscribers.ldap.password_file", str, None)
    if password_file and (problem := file_problem(password_file)) is not None:
        c.error("subscribers.ldap.password_file", f"{password_file}: {problem}")
    elif password_file:
        try:
            check_not_world_readable(password_file, "the LDAP password file")
            password = Path(password_file).read_text().strip()
        except ConfigError as exc:
            c.errors.extend(exc.errors)
        except OSError as exc:
            c.error("subscribers.ldap.password_file", f"{password_file}: cannot read "
                                                      f"({exc.strerror})")
        except UnicodeDecodeError:
            c.error("subscribers.ldap.password_file", f"{password_file}: not UTF-8 text")
    ca_file = c.get("subscribers.ldap.ca_file", str, None)
    if ca_file and (problem := file_problem(ca_file)) is not None:
        c.error("subscribers.ldap.ca_file", f"{ca_file}: {problem}")
    return {"url": url, "base_dn": c.get("subscribers.ldap.base_dn", str),
            "bind_dn": c.get("subscribers.ldap.bind_dn", str, None), "password": password,
            "starttls": c.get("subscribers.ldap.starttls", bool, False), "ca_file": ca_file,
            "timeout": c.number("subscribers.ldap.timeout", 3.0, 0.1),
            "cache_ttl": c.number("subscribers.ldap.cache_ttl", 60.0, 0.0),
            "cache_negative_ttl": c.number("subscribers.ldap.cache_negative_ttl", 5.0, 0.0),
            "cache_size": c.integer("subscribers.ldap.cache_size", 200_000, 1, MAX_CACHE)}


def _encapsulations(c: Checker, key: str) -> frozenset[str]:
    encaps = c.get(key, list, ["ipip", "gre"],
                   lambda v: None if v and all(isinstance(x, str) for x in v) and
                   set(v) <= {"ipip", "gre"} else
                   "a non-empty list of \"ipip\" and \"gre\"")
    ok = isinstance(encaps, list) and all(x in ("ipip", "gre") for x in encaps)
    return frozenset(encaps) if ok else frozenset({"ipip"})


def load_ha(path: str | Path) -> HaConfig:
    data = read_toml(path)
    c = Checker(path, data)
    encaps = _encapsulations(c, "ha.encapsulations")
    store = c.choice("subscribers.store", ("file", "ldap"), "file")
    peers = _peers(c, "fa_peer", "address")
    cfg = HaConfig(
        path=str(path),
        address=c.address("ha.address"),
        home_interface=c.get("ha.home_interface", str),
        home_network=c.network("ha.home_network"),
        max_lifetime=c.integer("ha.max_lifetime", 3600, 1, 65534),
        replay_window=c.number("ha.replay_window", 7.0, 0.1),
        encapsulations=encaps,
        reverse_tunneling=c.get("ha.reverse_tunneling", bool, True),
        vendor_id=c.integer("ha.vendor_id", 32473, 1, 2**24 - 1),
        subscriber_store=store,
        subscribers_file=c.get("subscribers.file", str,
                               "/etc/mipro/subscribers.toml" if store == "file" else None),
        fa_peers=peers,
        dataplane=_dataplane(c, "ha"),
        runtime=_runtime(c, "ha"),
        proxy_arp=c.choice("ha.proxy_arp", ("per-binding", "interface"), "per-binding"),
        kernel_tunnels=c.choice("ha.kernel_tunnels", ("per-care-of", "shared"), "per-care-of"),
        ldap=_ldap(c) if store == "ldap" else None,
        advertise=c.get("ha.advertise", bool, True),
        advertisement_interval=c.number("ha.advertisement_interval", 1.0, 0.1),
        udp_tunnelling=c.get("ha.udp_tunnelling", bool, True),
        udp_keepalive=c.integer("ha.udp_keepalive", 110, 1, 65535),
        limits=LimitsConfig(
            per_source=c.number("ha.limits.per_source", 50.0, 0.1),
            per_source_burst=c.number("ha.limits.per_source_burst", 100.0, 1.0),
            unknown_sources=c.number("ha.limits.unknown_sources", 2000.0, 1.0),
            unsigned_replies=c.number("ha.limits.unsigned_replies", 200.0, 0.0),
            kernel=c.get("ha.limits.kernel", bool, True)),
        redundancy=_redundancy(c) if "redundancy" in data else None,
    )
    c.unknown_keys({
        "": {"ha", "dataplane", "runtime", "subscribers", "fa_peer", "redundancy"},
        "redundancy": {"local_address", "peer_address", "key", "group", "port", "notify_fifo",
                       "keepalived_conf", "alone_after", "process_name",
                       "keepalived_pid_file"},
        "subscribers.ldap": {"url", "base_dn", "bind_dn", "password_file", "starttls", "ca_file",
                             "timeout", "cache_ttl", "cache_negative_ttl", "cache_size"},
        "ha": {"address", "home_interface", "home_network", "max_lifetime", "replay_window",
               "encapsulations", "reverse_tunneling", "vendor_id", "proxy_arp", "advertise",
               "kernel_tunnels",
               "advertisement_interval", "udp_tunnelling", "udp_keepalive", "limits"},
        "ha.limits": {"per_source", "per_source_burst", "unknown_sources", "unsigned_replies",
                      "kernel"},
        "dataplane": {"backend", "table", "rule_priority", "tunnel_interface"},
        "runtime": {"control_socket", "state_file", "log_level", "metrics_listen"},
        "subscribers": {"store", "file", "ldap"},
    })
    c.done()
    if cfg.address not in cfg.home_network:
        raise ConfigError([f"{path}: ha.address: {cfg.address} is not in ha.home_network "
                           f"{cfg.home_network}"])
    if peers or cfg.redundancy is not None:
        check_not_world_readable(path, "a file holding FA-HA keys" if peers else
                                 "a file holding the redundancy key")
    return cfg


def _redundancy(c: Checker) -> RedundancyConfig:
    groups = []
    seen: set[int] = set()
    for i, _ in enumerate(c.get("redundancy.group", list)):
        k = f"redundancy.group.{i}"
        vrid = c.integer(f"{k}.vrid", lo=1, hi=255)
        if vrid in seen:
            c.error(f"{k}.vrid", f"{vrid} is listed twice")
        seen.add(vrid)
        groups.append(GroupConfig(
            vrid=vrid, address=c.address(f"{k}.address"), instance=c.get(f"{k}.instance", str),
            track_file=c.get(f"{k}.track_file", str),
            priority=c.integer(f"{k}.priority", 100, 1, 254),
            advert_interval=c.integer(f"{k}.advert_interval", 1, 1, 255)))
    if not groups:
        c.error("redundancy.group", "at least one group (a virtual address and its VRRP "
                                    "instance)")
    local = c.address("redundancy.local_address")
    peer = c.address("redundancy.peer_address")
    if local == peer:
        c.error("redundancy.peer_address", "the same as redundancy.local_address")
    return RedundancyConfig(
        local_address=local, peer_address=peer, key=c.key_bytes("redundancy.key"),
        groups=tuple(groups), port=c.integer("redundancy.port", 4340, 1, 65535),
        notify_fifo=c.get("redundancy.notify_fifo", str, "/run/mipro/keepalived.fifo"),
        keepalived_conf=c.get("redundancy.keepalived_conf", str,
                              "/etc/keepalived/keepalived.conf"),
        alone_after=c.number("redundancy.alone_after", 10.0, 0.0),
        process_name=_process_name(c), keepalived_pid_file=_pid_file(c))


def _process_name(c: Checker) -> str:
    name = c.get("redundancy.process_name", str, "mipro-ha")
    if not 0 < len(name.encode()) <= 15:
        c.error("redundancy.process_name", f"{name!r}: 1 to 15 bytes (the kernel's comm)")
    return name


def _pid_file(c: Checker) -> str | None:
    def problem(path: str) -> str | None:
        if not path.startswith("/") or "\0" in path:
            return f"{path!r}: not an absolute path (keepalived's --vrrp_pid, e.g. /run/vrrp.pid)"
        return None

    return c.get("redundancy.keepalived_pid_file", str, None, problem)


def _ports(c: Checker, key: str) -> tuple[tuple[str, int, int], ...]:
    """["udp:5060-5061", "tcp:5060"] → (("udp", 5060, 5061), ("tcp", 5060, 5060))."""
    out = []
    for i, item in enumerate(c.get(key, list, []) or []):
        proto, _, ports = str(item).partition(":")
        lo, _, hi = ports.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            a = b = -1
        if proto not in ("udp", "tcp") or not 0 < a <= b <= 65535:
            c.error(f"{key}.{i}", f"{item!r} is not like \"udp:5060-5061\" or \"tcp:5060\"")
            continue
        out.append((proto, a, b))
    return tuple(out)


def _peers(c: Checker, table: str, key: str) -> dict[IPv4Address, SecurityAssociation]:
    """[[table]] entries of an address and a security association (spi, key, algorithm)."""
    peers: dict[IPv4Address, SecurityAssociation] = {}
    for i, _ in enumerate(c.get(table, list, [])):
        addr = c.address(f"{table}.{i}.{key}")
        sa = _sa(c, f"{table}.{i}")
        if addr is not None and sa is not None:
            peers[addr] = sa
    return peers


def _networks(c: Checker, key: str, default: list[str]) -> tuple[IPv4Network, ...]:
    """A list of prefixes like ["10.0.0.0/8"]."""
    out = []
    for i, text in enumerate(c.get(key, list, default) or []):
        try:
            out.append(IPv4Network(str(text)))
        except ValueError as exc:
            c.error(f"{key}.{i}", f"{text!r} is not an IPv4 prefix like 10.1.0.0/24 ({exc})")
    return tuple(out)


def _mn_peers(c: Checker) -> dict[IPv4Address | tuple[IPv4Address, IPv4Address],
                                   SecurityAssociation]:
    """[[mn_peer]]: MN-FA keys by home address, or by home address and home agent when
    mobile nodes of two home networks share an address (overlapping realms)."""
    peers: dict[IPv4Address | tuple[IPv4Address, IPv4Address], SecurityAssociation] = {}
    for i, _ in enumerate(c.get("mn_peer", list, [])):
        home = c.address(f"mn_peer.{i}.home_address")
        ha = c.address(f"mn_peer.{i}.home_agent", None)
        sa = _sa(c, f"mn_peer.{i}")
        if home is not None and sa is not None:
            key = (home, ha) if ha is not None else home
            if key in peers:
                c.error(f"mn_peer.{i}", f"a second key for {home}"
                        f"{f' of home agent {ha}' if ha else ''}")
            peers[key] = sa
    return peers


def load_mn(path: str | Path) -> MnConfig:
    data = read_toml(path)
    c = Checker(path, data)
    sa = _sa(c, "mn")
    care_of = c.choice("interface.care_of", ("dhcp", "static"), "dhcp")
    static = c.interface_address("interface.address", None)
    if care_of == "static" and static is None:
        c.error("interface.address", "missing (required when care_of = \"static\")")
    cfg = MnConfig(
        path=str(path),
        home_address=c.address("mn.home_address"),
        home_agent=c.address("mn.home_agent"),
        home_network=c.network("mn.home_network"),
        nai=c.get("mn.nai", str, ""),
        sa=sa,  # type: ignore[arg-type]
        replay=ReplayMethod(c.choice("mn.replay", REPLAY, "timestamp") or "timestamp"),
        lifetime=c.integer("mn.lifetime", 600, 1, 65534),
        reverse_tunnel=c.get("mn.reverse_tunnel", bool, True),
        encapsulation=c.choice("mn.encapsulation", ("ipip", "gre"), "ipip"),
        interface=c.get("interface.name", str),
        care_of=care_of,
        static_address=static,
        gateway=c.address("interface.gateway", None),
        vendor_id=c.integer("mn.vendor_id", 32473, 1, 2**24 - 1),
        dataplane=_dataplane(c, "mn"),
        runtime=_runtime(c, "mn"),
        mode=c.choice("mn.mode", ("auto", "fa", "colocated"), "auto"),
        discovery_wait=c.number("mn.discovery_wait", 1.0, 0.0),
        home_gateway=c.address("mn.home_gateway", None),
        solicit_on_attach=c.get("mn.solicit_on_attach", bool, True),
        tunnel_ports=_ports(c, "mn.tunnel_ports"),
        fa_peers=_peers(c, "fa_peer", "address"),
        notify_previous_fa=c.get("mn.notify_previous_fa", bool, True),
        udp_tunnel=c.choice("mn.udp_tunnel", ("auto", "always", "never"), "auto"),
        forwarding_lifetime=c.integer("mn.forwarding_lifetime", 10, 0, 65535),
    )
    c.unknown_keys({
        "": {"mn", "interface", "dataplane", "runtime", "fa_peer"},
        "mn": {"home_address", "home_agent", "home_network", "nai", "spi", "key", "algorithm",
               "replay", "lifetime", "reverse_tunnel", "encapsulation", "vendor_id", "mode",
               "discovery_wait", "home_gateway", "solicit_on_attach", "tunnel_ports",
               "notify_previous_fa", "udp_tunnel", "forwarding_lifetime"},
        "interface": {"name", "care_of", "address", "gateway"},
        "dataplane": {"backend", "table", "rule_priority", "tunnel_interface"},
        "runtime": {"control_socket", "state_file", "log_level", "metrics_listen"},
    })
    c.done()
    if cfg.home_address not in cfg.home_network:
        raise ConfigError([f"{path}: mn.home_address: {cfg.home_address} is not in "
                           f"mn.home_network {cfg.home_network}"])
    check_not_world_readable(path, "a file holding the MN-HA key")
    return cfg


@dataclass(frozen=True)
class FaForwardingConfig:
    """[fa.forwarding]: the previous FA as a forwarding pointer (docs/configuration.md)."""

    enabled: bool = True
    max_lifetime: int = 60  # seconds, whatever a Binding Update asks
    replay: float = 0.0  # seconds of recently delivered datagrams sent on again (0: none)


@dataclass(frozen=True)
class FaRealmsConfig:
    """[fa.realms]: home agents' realms at the FA (docs/configuration.md)."""

    linger: float = 0.0  # seconds a keyed HA's realm stays after its last visitor (0: none)


@dataclass(frozen=True)
class FaRoutingConfig:
    """[fa.routing]: visitors' /32s in a table of their own for FRR (docs/routing.md)."""

    table: int = 0  # 0: none (FRR's ip import-table takes 1-252)
    interfaces: tuple[str, ...] = ()  # the site interfaces FRR advertises them on
    home_networks: tuple[IPv4Network, ...] = (IPv4Network("0.0.0.0/0"),)
    metric: int = 0


@dataclass(frozen=True)
class FaLimitsConfig:
    """[fa.limits]: budgets for work before authentication (docs/security.md)."""

    per_mac: float = 10.0  # requests/s from one link-layer address
    per_mac_burst: float = 20.0
    unknown_macs: float = 1000.0  # requests/s from all addresses not yet visitors
    unkeyed_home_agent: float = 100.0  # relays/s to one HA we share no FA-HA key with
    pending: int = 4096  # requests waiting for their home agent, in all
    pending_per_mac: int = 4
    kernel: bool = True  # drop the excess at the link's ingress hook (nftables)


@dataclass(frozen=True)
class FaConfig:
    path: str
    interface: str
    address: IPv4Address
    prefix_length: int
    care_of_addresses: tuple[IPv4Address, ...]
    max_lifetime: int
    advertisement_interval: float
    registration_required: bool
    reverse_tunneling: bool
    reverse_tunnel_required: bool
    encapsulations: frozenset[str]
    vendor_id: int
    ha_peers: dict[IPv4Address, SecurityAssociation]
    mn_peers: dict[IPv4Address | tuple[IPv4Address, IPv4Address], SecurityAssociation]
    require_mn_fa: bool
    dataplane: DataplaneConfig
    runtime: RuntimeConfig
    home_agents: tuple[IPv4Network, ...] = (IPv4Network("0.0.0.0/0"),)
    limits: FaLimitsConfig = FaLimitsConfig()
    forwarding: FaForwardingConfig = FaForwardingConfig()
    routing: FaRoutingConfig = FaRoutingConfig()
    realms: FaRealmsConfig = FaRealmsConfig()
    role: str = "fa"


def load_fa(path: str | Path) -> FaConfig:
    data = read_toml(path)
    c = Checker(path, data)
    encaps = _encapsulations(c, "fa.encapsulations")
    coas = c.get("fa.care_of_addresses", list, None)
    address = c.address("fa.address")
    care_of: list[IPv4Address] = []
    for i, text in enumerate(coas or ([str(address)] if address else [])):
        try:
            care_of.append(IPv4Address(text))
        except ValueError as exc:
            c.error(f"fa.care_of_addresses.{i}", f"{text!r} is not an IPv4 address ({exc})")
    peers = _peers(c, "ha_peer", "address")
    mns = _mn_peers(c)
    cfg = FaConfig(
        path=str(path),
        interface=c.get("fa.interface", str),
        address=address,
        prefix_length=c.integer("fa.prefix_length", 24, 0, 32),
        care_of_addresses=tuple(care_of),
        max_lifetime=c.integer("fa.max_lifetime", 600, 1, 65534),
        advertisement_interval=c.number("fa.advertisement_interval", 1.0, 0.1),
        registration_required=c.get("fa.registration_required", bool, True),
        reverse_tunneling=c.get("fa.reverse_tunneling", bool, True),
        reverse_tunnel_required=c.get("fa.reverse_tunnel_required", bool, False),
        encapsulations=encaps,
        vendor_id=c.integer("fa.vendor_id", 32473, 1, 2**24 - 1),
        ha_peers=peers,
        mn_peers=mns,
        require_mn_fa=c.get("fa.require_mn_fa_auth", bool, False),
        dataplane=_dataplane(c, "fa"),
        runtime=_runtime(c, "fa"),
        home_agents=_networks(c, "fa.home_agents", ["0.0.0.0/0"]),
        limits=FaLimitsConfig(
            per_mac=c.number("fa.limits.per_mac", 10.0, 0.1),
            per_mac_burst=c.number("fa.limits.per_mac_burst", 20.0, 1.0),
            unknown_macs=c.number("fa.limits.unknown_macs", 1000.0, 1.0),
            unkeyed_home_agent=c.number("fa.limits.unkeyed_home_agent", 100.0, 0.1),
            pending=c.integer("fa.limits.pending", 4096, 1, 1 << 20),
            pending_per_mac=c.integer("fa.limits.pending_per_mac", 4, 1, 1024),
            kernel=c.get("fa.limits.kernel", bool, True)),
        forwarding=FaForwardingConfig(
            enabled=c.get("fa.forwarding.enabled", bool, True),
            max_lifetime=c.integer("fa.forwarding.max_lifetime", 60, 0, 65535),
            replay=c.number("fa.forwarding.replay", 0.0, 0.0)),
        routing=FaRoutingConfig(
            table=c.integer("fa.routing.table", 0, 0, 252),
            interfaces=tuple(str(n) for n in c.get(
                "fa.routing.interfaces", list, [],
                lambda v: None if all(isinstance(n, str) and 0 < len(n) < 16 for n in v)
                else "interface names of 1 to 15 characters")),
            home_networks=_networks(c, "fa.routing.home_networks", ["0.0.0.0/0"]),
            metric=c.integer("fa.routing.metric", 0, 0, 2**32 - 1)),
        realms=FaRealmsConfig(linger=c.number("fa.realms.linger", 0.0, 0.0, 86400.0)),
    )
    c.unknown_keys({
        "": {"fa", "dataplane", "runtime", "ha_peer", "mn_peer"},
        "fa": {"interface", "address", "prefix_length", "care_of_addresses", "max_lifetime",
               "advertisement_interval", "registration_required", "reverse_tunneling",
               "reverse_tunnel_required", "encapsulations", "vendor_id", "require_mn_fa_auth",
               "home_agents", "limits", "forwarding", "routing", "realms"},
        "fa.forwarding": {"enabled", "max_lifetime", "replay"},
        "fa.realms": {"linger"},
        "fa.routing": {"table", "interfaces", "home_networks", "metric"},
        "fa.limits": {"per_mac", "per_mac_burst", "unknown_macs", "unkeyed_home_agent", "pending",
                      "pending_per_mac", "kernel"},
        "dataplane": {"backend", "table", "rule_priority"},  # a tunnel device per HA
        "runtime": {"control_socket", "state_file", "log_level", "metrics_listen"},
    })
    c.done()
    if peers or mns:
        check_not_world_readable(path, "a file holding FA-HA or MN-FA keys")
    return cfg


def load_role(path: str | Path) -> HaConfig | MnConfig | FaConfig:
    """Load a file whatever its role, told by its top-level table."""
    data = read_toml(path)
    if "ha" in data:
        return load_ha(path)
    if "fa" in data:
        return load_fa(path)
    if "mn" in data:
        return load_mn(path)
    raise ConfigError([f"{path}: (top level): no [ha], [fa] or [mn] table; cannot tell the "
                       "role"])

"""The LDAP subscriber store against a real slapd on loopback (plain, StartTLS, ldaps)."""

import time
from ipaddress import IPv4Address as A
from pathlib import Path

import pytest

from mipro.core.actions import Send
from mipro.core.ha import HaPolicy, HomeAgent
from mipro.security import SecurityAssociation, append_authenticator
from mipro.security.replay import timestamp_identification
from mipro.subscribers.file_store import load_subscribers
from mipro.subscribers.ldap_store import LdapSettings, LdapStore
from mipro.subscribers.model import StoreUnavailable
from mipro.wire import ExtType, RegistrationReply, RegistrationRequest, StaticRoutesExtension

from . import slapd as slapd_mod

pytestmark = pytest.mark.skipif(not slapd_mod.available(),
                                reason="slapd (Debian package slapd) is not installed")
HOME = A("10.1.0.100")
KEY = bytes.fromhex("6c61622d6d6e312d6d6e2d68612d6b6579")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = slapd_mod.Slapd(tmp_path_factory.mktemp("slapd")).start()
    yield s
    s.stop()


def settings(server, **kw):
    base = {"url": server.url, "base_dn": slapd_mod.BASE_DN, "bind_dn": slapd_mod.ADMIN_DN,
            "password": slapd_mod.ADMIN_PW}
    return LdapSettings(**(base | kw))


def test_lookup_matches_the_file_store_profile(server, tmp_path):
    sub = LdapStore(settings(server)).lookup(HOME)
    ro = (REPO / "netns-lab" / "scenarios" / "ro" / "ha" / "subscribers.toml").read_text()
    f = tmp_path / "subs.toml"
    f.write_text(ro.replace('max_lifetime = 600\n', 'max_lifetime = 600\nreplay = "timestamp"\n'))
    f.chmod(0o600)
    expected = load_subscribers(f).lookup(HOME)
    assert sub.associations == {256: SecurityAssociation(256, KEY)}
    assert sub.nai == "mn1@home.example" and sub.max_lifetime == 600
    assert sub.routes == expected.routes
    assert [x.dport for x in sub.filters] == [(5060, 5061), (80, 80)]
    assert sub.filters[0] == expected.filters[0] and sub.filters[1] == expected.filters[2]


def test_by_nai_and_unknown(server):
    store = LdapStore(settings(server))
    assert store.lookup(A("10.9.9.9"), "mn1@home.example").home_address == HOME
    assert store.lookup(A("10.9.9.9")) is None


def test_starttls_and_ldaps(server):
    assert LdapStore(settings(server, starttls=True, ca_file=server.ca_file)).lookup(HOME)
    assert LdapStore(settings(server, url=server.ldaps_url, ca_file=server.ca_file)).lookup(HOME)


def test_untrusted_certificate_is_refused(server, tmp_path):
    other = slapd_mod.Slapd(tmp_path)
    slapd_mod._certificates(tmp_path)  # a different CA
    with pytest.raises(StoreUnavailable):
        LdapStore(settings(server, url=server.ldaps_url, ca_file=str(tmp_path / "ca.pem"))
                  ).lookup(HOME)
    del other


def test_wrong_password_is_store_unavailable(server):
    with pytest.raises(StoreUnavailable):
        LdapStore(settings(server, password="wrong")).lookup(HOME)


def request(now):
    req = RegistrationRequest.build(flags=0x22, lifetime=300, home_address=HOME,
                                    home_agent="10.1.0.1", care_of_address="198.51.100.9",
                                    identification=timestamp_identification(now))
    return append_authenticator(req.encode(), ExtType.MN_HA_AUTH,
                                SecurityAssociation(256, KEY))


def test_home_agent_registers_with_the_ldap_profile(server):
    ha = HomeAgent(HaPolicy((A("10.1.0.1"),)), LdapStore(settings(server)))
    now = time.time()
    out = ha.receive(request(now), A("198.51.100.9"), 434, now)
    reply = RegistrationReply.decode([a for a in out if isinstance(a, Send)][0].data)
    assert reply.code == 0 and reply.find(StaticRoutesExtension) is not None


def test_store_down_means_130_and_no_binding():
    store = LdapStore(LdapSettings(url="ldap://127.0.0.1:1", base_dn=slapd_mod.BASE_DN,
                                   timeout=1))
    ha = HomeAgent(HaPolicy((A("10.1.0.1"),)), store)
    now = time.time()
    out = ha.receive(request(now), A("198.51.100.9"), 434, now)
    reply = RegistrationReply.decode([a for a in out if isinstance(a, Send)][0].data)
    assert reply.code == 130 and len(ha.bindings) == 0
    assert any("subscriber store" in str(a) for a in out)


def test_garbage_entry_is_store_unavailable(tmp_path):
    ldif = tmp_path / "bad.ldif"
    ldif.write_text((REPO / "conf" / "subscribers.ldif").read_text().replace(
        "miproRoute: 1 198.51.100.0/24 via=local cost=5",
        "miproRoute: 1 198.51.100.0/33 via=sideways cost=5"))
    s = slapd_mod.Slapd(tmp_path / "srv", ldif=ldif).start()
    try:
        with pytest.raises(StoreUnavailable, match="miproRoute|destination|via"):
            LdapStore(settings(s)).lookup(HOME)
    finally:
        s.stop()


def test_cache_reuses_a_profile_until_its_ttl(server):
    """A profile changed in the directory reaches the HA when the cached copy expires."""
    import ldap3

    from mipro.subscribers.cache import CachedStore

    now = [0.0]
    store = CachedStore(LdapStore(settings(server)), ttl=60, clock=lambda: now[0])
    before = store.lookup(HOME)
    with ldap3.Connection(server.url, slapd_mod.ADMIN_DN, slapd_mod.ADMIN_PW,
                          auto_bind=True) as admin:
        assert admin.search(slapd_mod.BASE_DN, "(miproHomeAddress=10.1.0.100)")
        dn = admin.entries[0].entry_dn
        admin.modify(dn, {"miproMaxLifetime": [(ldap3.MODIFY_REPLACE, ["120"])]})
        assert admin.result["result"] == 0, admin.result
        try:
            assert store.lookup(HOME).max_lifetime == before.max_lifetime  # cached
            now[0] += 61
            assert store.lookup(HOME).max_lifetime == 120  # asked again
            assert (store.hits, store.misses) == (1, 2)
        finally:
            admin.modify(dn, {"miproMaxLifetime": [(ldap3.MODIFY_REPLACE,
                                                    [str(before.max_lifetime)])]})


def test_short_key_makes_the_entry_unusable(tmp_path):
    """The file store's 16-byte minimum holds for keys from the directory too: an entry
    with an empty or a short key is garbage (StoreUnavailable naming DN and attribute, so
    the HA denies 130 and installs nothing); the other entries still work."""
    entry = (REPO / "conf" / "subscribers.ldif").read_text().split("\n\n")[-1].strip()
    extra = []
    for n, key in ((2, "text:"), (3, "hex:00112233445566778899aabbccddee")):
        extra.append(entry.replace("cn=mn1,", f"cn=mn{n},").replace("cn: mn1", f"cn: mn{n}")
                     .replace("10.1.0.100", f"10.1.0.10{n}")
                     .replace("mn1@home.example", f"mn{n}@home.example")
                     .replace("hex:6c61622d6d6e312d6d6e2d68612d6b6579", key))
    ldif = tmp_path / "short.ldif"
    ldif.write_text((REPO / "conf" / "subscribers.ldif").read_text().rstrip() + "\n\n" +
                    "\n\n".join(extra) + "\n")
    s = slapd_mod.Slapd(tmp_path / "srv", ldif=ldif).start()
    try:
        store = LdapStore(settings(s))
        for n, size in ((2, 0), (3, 15)):
            with pytest.raises(StoreUnavailable) as err:
                store.lookup(A(f"10.1.0.10{n}"))
            text = str(err.value)
            assert f"cn=mn{n},ou=mobile-nodes,dc=example,dc=org" in text, text
            assert "miproSecurityAssociation" in text, text
            assert f"key of {size} bytes is too short (at least 16)" in text, text
        assert store.lookup(HOME).associations == {256: SecurityAssociation(256, KEY)}
        ha = HomeAgent(HaPolicy((A("10.1.0.1"),)), store)
        now = time.time()
        req = RegistrationRequest.build(flags=0x22, lifetime=300, home_address="10.1.0.102",
                                        home_agent="10.1.0.1", care_of_address="198.51.100.9",
                                        identification=timestamp_identification(now))
        out = ha.receive(append_authenticator(req.encode(), ExtType.MN_HA_AUTH,
                                              SecurityAssociation(256, b"")),
                         A("198.51.100.9"), 434, now)
        reply = RegistrationReply.decode([a for a in out if isinstance(a, Send)][0].data)
        assert reply.code == 130 and len(ha.bindings) == 0
    finally:
        s.stop()

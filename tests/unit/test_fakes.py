"""The fake dataplanes (dataplane.backend = "fake"): the interface of the real ones, a record
of what would be programmed, and no kernel change; an unknown backend name is refused."""

import asyncio
import inspect
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from mipro.core.fa import Visitor
from mipro.dataplane.fa.agent import FaDataplane
from mipro.dataplane.fake import FakeFaDataplane, FakeHaDataplane, FakeMnDataplane
from mipro.dataplane.ha import HaDataplane
from mipro.dataplane.kernel.detect import choose_backend
from mipro.dataplane.mn.agent import MnDataplane

A = IPv4Address
PAIRS = [(HaDataplane, FakeHaDataplane), (FaDataplane, FakeFaDataplane),
         (MnDataplane, FakeMnDataplane)]


def public(cls):
    return {n: v for n, v in vars(cls).items() if not n.startswith("_")}


@pytest.mark.parametrize(("real", "fake"), PAIRS, ids=lambda c: c.__name__)
def test_a_fake_has_the_interface_of_its_real_dataplane(real, fake):
    for name, member in public(real).items():
        assert hasattr(fake, name), f"{fake.__name__} has no {name}"
        if inspect.isfunction(member):
            theirs = getattr(fake, name)
            assert inspect.iscoroutinefunction(member) == inspect.iscoroutinefunction(theirs), \
                name
            assert list(inspect.signature(member).parameters) == \
                list(inspect.signature(theirs).parameters), name


@pytest.mark.parametrize(("real", "fake"), PAIRS[1:], ids=lambda c: c.__name__)
def test_a_daemon_builds_a_fake_as_it_builds_the_real_one(real, fake):
    wanted = {n for n, p in inspect.signature(real).parameters.items()
              if p.kind is p.KEYWORD_ONLY}
    assert wanted <= set(inspect.signature(fake).parameters)


def visitor(home="10.1.0.100", mac=b"\x02\0\0\0\1\0"):
    return Visitor(home_address=A(home), mac=mac, home_agent=A("10.1.0.1"),
                   care_of_address=A("198.51.100.1"), source=A(home), source_port=434,
                   identification=1,
                   requested_lifetime=600, reverse_tunnel=True, encapsulation="ipip")


def test_the_fake_foreign_agent_records_visitors_and_injects_failures():
    dp = FakeFaDataplane(backend="fake", interface="lan0", care_of=A("198.51.100.1"),
                         table=1434, rule_priority=900, log=None, fail_on={A("10.1.0.200")})

    async def go():
        await dp.start(None)
        v = visitor()
        await dp.add_visitor(v)
        assert dp.sharing(v.home_address) == [v] and dp.routes_status(v.key)["routes"] == []
        with pytest.raises(OSError):
            await dp.add_visitor(visitor("10.1.0.200"))
        await dp.remove_visitor(v)
        await dp.stop()
        return v

    v = asyncio.run(go())
    assert dp.calls == [("start", None), ("add_visitor", v.key), ("remove_visitor", v.key),
                        ("stop", None)]
    assert dp.visitors == {} and dp.encapsulations == {"ipip", "gre"}


def test_the_fake_mobile_node_records_its_modes():
    dp = FakeMnDataplane(backend="fake", interface="eth0", tunnel_interface="mip0",
                         table=434, rule_priority=1000, home_address=A("10.1.0.100"),
                         home_agent=A("10.1.0.1"), log=None)
    coa = IPv4Interface("198.51.100.150/24")

    async def go():
        await dp.start(None)
        await dp.nl.addr_replace("eth0", coa.ip, 24)  # what the daemon writes through nl
        await dp.attach(coa, A("198.51.100.1"))
        await dp.tunnel_up("udp", True)
        dp.keepalive(1)
        await dp.at_home(IPv4Network("10.1.0.0/24"), A("10.1.0.1"))
        await dp.stop()

    asyncio.run(go())
    assert [c[0] for c in dp.calls] == ["start", "addr_replace", "attach", "tunnel_up",
                                        "keepalive", "tunnel_down", "at_home", "stop"]
    assert not dp.up and dp.udp_silence() == 0.0 and dp.relay.udp_send is None
    for write in ("route_replace", "rule_ensure", "link_del", "flush_table"):
        assert not hasattr(dp.nl, write)  # never handed on to the kernel


class NoKernel:
    """A Netlink whose every use fails the test: probing creates links."""

    @property
    def ipr(self):
        raise AssertionError("the kernel was probed")


@pytest.mark.parametrize(("wanted", "backend"), [("fake", "fake"), ("userspace", "userspace")])
def test_configured_backends_need_no_probe(wanted, backend):
    assert asyncio.run(choose_backend(NoKernel(), wanted))[0] == backend


@pytest.mark.parametrize("wanted", ["bogus", "Fake", ""])
def test_an_unknown_backend_is_refused_not_taken_for_auto(wanted):
    with pytest.raises(ValueError, match="unknown dataplane backend"):
        asyncio.run(choose_backend(NoKernel(), wanted))

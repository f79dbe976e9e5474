"""The kernel backend on a kernel that has ipip and ip_gre: tunnels, routes, rules, proxy
ARP and filters programmed through pyroute2 and python-iptables, in the lab."""


import pytest

from mipro.lab.cli import load_check

HOME = "10.1.0.100"


def check(scenario):
    return load_check(scenario)


def kernel_backend(lab, *nodes_files):
    for node, name in nodes_files:
        path = lab.conf(node, name)
        path.write_text(path.read_text() + '\n[dataplane]\nbackend = "kernel"\n')


def links(lab, node):
    return lab.exec(node, "ip", "-d", "-o", "link", "show").stdout


@pytest.mark.parametrize("encapsulation", ["ipip", "gre"])
def test_colocated_mobile_node_over_kernel_tunnels(make_lab, encapsulation):
    lab = make_lab("colocated", services=False)
    kernel_backend(lab, ("ha", "ha.toml"), ("mn", "mn.toml"))
    if encapsulation == "gre":
        lab.edit_conf("mn", "mn.toml", "lifetime = 600", 'lifetime = 600\nencapsulation = "gre"')
    for name in ("dnsmasq", "ha", "mn"):
        lab.start_service(name)
    both = lab.wait_for(lambda: check("colocated").registered(lab), 60, "registration")
    assert both["ha"]["dataplane"] == "kernel" and both["mn"]["dataplane"] == "kernel"
    coa = both["mn"]["care_of_address"]
    prefix = "miph-g" if encapsulation == "gre" else "miph-"
    ha_links = links(lab, "ha")
    name = prefix + bytes(int(x) for x in coa.split(".")).hex()
    assert f"{name}@" in ha_links and f"remote {coa}" in ha_links, ha_links
    assert (" gre " if encapsulation == "gre" else " ipip ") in ha_links
    assert "remote 10.1.0.1" in links(lab, "mn")
    assert HOME in lab.exec("ha", "ip", "neigh", "show", "proxy").stdout
    assert f"{HOME} dev {name}" in lab.exec("ha", "ip", "route", "show", "table", "434").stdout
    for node in ("cn-home", "cn-inet"):
        assert lab.ping(node, HOME)[0] == 3, node
    res = lab.tcp_transfer("cn-home", "mn", HOME, 1 << 20)
    assert res["client"]["verified"], res
    res = lab.tcp_transfer("mn", "cn-home", "10.1.0.10", 1 << 20, port=5002)
    assert res["client"]["verified"] and res["server"]["peer"] == HOME, res
    assert lab.stop_service("mn") == 0
    lab.wait_for(lambda: not lab.status("ha")["bindings"], 30, "deregistration")
    assert name not in links(lab, "ha") and "mip0" not in links(lab, "mn")
    assert HOME not in lab.exec("ha", "ip", "neigh", "show", "proxy").stdout


def test_route_optimization_with_kernel_tunnels(make_lab):
    """The `ro` scenario (Figs. 3a, 4, 5) with every daemon on the kernel backend."""
    lab = make_lab("ro", services=False)
    kernel_backend(lab, ("ha", "ha.toml"), ("fa1", "fa.toml"), ("fa2", "fa.toml"),
                   ("mn", "mn.toml"))
    for name in ("ha", "fa1", "fa2", "mn"):
        lab.start_service(name)
    assert lab.status("fa1")["dataplane"] == "kernel"
    check("ro").run(lab, say=print)
    assert "mipf-0a010001" in links(lab, "fa1")  # FA1's ipip link to the HA


@pytest.mark.parametrize("encapsulation", ["ipip", "gre"])
def test_shared_collect_metadata_tunnels_at_the_home_agent(make_lab, encapsulation):
    """ha.kernel_tunnels = "shared": one collect-metadata link per kind and a lightweight-
    tunnel route per binding; tunnelled packets only from registered care-of addresses."""
    lab = make_lab("colocated", services=False)
    kernel_backend(lab, ("ha", "ha.toml"), ("mn", "mn.toml"))
    lab.edit_conf("ha", "ha.toml", "[ha]", '[ha]\nkernel_tunnels = "shared"')
    if encapsulation == "gre":
        lab.edit_conf("mn", "mn.toml", "lifetime = 600", 'lifetime = 600\nencapsulation = "gre"')
    for name in ("dnsmasq", "ha", "mn"):
        lab.start_service(name)
    both = lab.wait_for(lambda: check("colocated").registered(lab), 60, "registration")
    coa = both["mn"]["care_of_address"]
    device = "miph-gre" if encapsulation == "gre" else "miph-ipip"
    ha_links = links(lab, "ha")
    assert "miph-ipip@" in ha_links and "miph-gre@" in ha_links and "external" in ha_links
    routes = lab.exec("ha", "ip", "route", "show", "table", "434").stdout
    assert f"encap ip id 0 src 10.1.0.1 dst {coa}" in routes and f"dev {device}" in routes, \
        routes
    assert coa in lab.exec("ha", "ipset", "list", "mipro-coa").stdout
    res = lab.tcp_transfer("cn-home", "mn", HOME, 1 << 20)
    assert res["client"]["verified"], res
    res = lab.tcp_transfer("mn", "cn-home", "10.1.0.10", 1 << 20, port=5002)
    assert res["client"]["verified"] and res["server"]["peer"] == HOME, res
    # a tunnelled packet from an address with no binding is dropped before decapsulation
    lab.exec("cn-inet", lab.python, "-c",
             "from scapy.all import IP, ICMP, send; send(IP(dst='10.1.0.1', proto=4)/"
             "IP(src='10.1.0.100', dst='10.1.0.10')/ICMP(), verbose=0)")
    counters = lab.exec("ha", "iptables-legacy", "-t", "raw", "-L", "MIPRO-TUN-IN", "-v", "-n",
                        "-x").stdout
    dropped = [line.split()[0] for line in counters.splitlines() if " DROP " in f" {line} "]
    assert any(int(n) > 0 for n in dropped), counters
    assert lab.stop_service("mn") == 0
    lab.wait_for(lambda: not lab.status("ha")["bindings"], 30, "deregistration")
    assert HOME not in lab.exec("ha", "ip", "route", "show", "table", "434").stdout
    assert coa not in lab.exec("ha", "ipset", "list", "mipro-coa").stdout
    assert lab.stop_service("ha") == 0
    assert "miph-" not in links(lab, "ha")
    assert "MIPRO" not in lab.exec("ha", "iptables-legacy", "-t", "raw", "-S").stdout
    assert "mipro-coa" not in lab.exec("ha", "ipset", "list", "-n").stdout


def test_foreign_agent_offers_gre_only_if_it_can_deliver_it(make_lab):
    """The kernel FA's device per home agent is an ipip link: it advertises no G and
    denies a GRE registration (72), installing nothing; IP-in-IP still registers."""
    from ..integration.test_handover import advertised_flags

    lab = make_lab("handover", services=False)
    kernel_backend(lab, ("fa1", "fa.toml"))
    lab.edit_conf("mn", "mn.toml", "mode = \"auto\"", "mode = \"fa\"\nencapsulation = \"gre\"")
    for name in ("ha", "fa1", "mn"):
        lab.start_service(name)
    assert lab.status("fa1")["dataplane"] == "kernel"
    lab.wait_for(lambda: any("code=72" in x for x in lab.log_lines("fa1")), 30,
                 "the FA's denial of GRE")
    assert any("event=encapsulation-unavailable" in x and "encapsulations=gre" in x
               for x in lab.log_lines("fa1"))
    assert lab.status("fa1")["visitors"] == [] and lab.status("ha")["bindings"] == []
    assert "mipf-" not in links(lab, "fa1")
    flags = advertised_flags(lab)
    assert flags and not any("G" in f for f in flags), flags
    lab.stop_service("mn")
    lab.edit_conf("mn", "mn.toml", "encapsulation = \"gre\"", "encapsulation = \"ipip\"")
    lab.start_service("mn")
    lab.wait_for(lambda: lab.status("fa1")["visitors"], 60, "IP-in-IP registration")
    assert "mipf-0a010001" in links(lab, "fa1") and lab.ping("mn", "10.1.0.10")[0] == 3


def test_colocated_kernel_tunnel_renewal_touches_nothing(make_lab):
    """A renewal that keeps encapsulation and endpoints keeps the MN's ipip link: no
    link, address or route is deleted, the interface index stays."""
    import subprocess
    import time

    lab = make_lab("colocated", services=False)
    kernel_backend(lab, ("ha", "ha.toml"), ("mn", "mn.toml"))
    lab.edit_conf("mn", "mn.toml", "lifetime = 600", "lifetime = 4")  # renewals at 3.2 s
    for name in ("dnsmasq", "ha", "mn"):
        lab.start_service(name)
    lab.wait_for(lambda: check("colocated").registered(lab), 60, "registration")
    assert lab.status("mn")["dataplane"] == "kernel"

    def state():
        return {"link": lab.exec("mn", "ip", "-o", "link", "show", "mip0").stdout.split(":")[0],
                "addresses": lab.exec("mn", "ip", "-o", "addr", "show").stdout,
                "routes": lab.exec("mn", "ip", "route", "show", "table", "all").stdout}

    before = state()
    renewals = sum("event=renewed" in x for x in lab.log_lines("mn"))
    monitor = subprocess.Popen(["ip", "netns", "exec", lab.ns("mn"), "ip", "-o", "monitor",
                                "link", "address", "route"], stdout=subprocess.PIPE, text=True)
    try:
        lab.wait_for(lambda: sum("event=renewed" in x for x in lab.log_lines("mn")) >=
                     renewals + 2, 30, "two renewals")
        time.sleep(1.0)
    finally:
        monitor.terminate()
        events = monitor.communicate(timeout=10)[0].splitlines()
    assert not [e for e in events if e.startswith("Deleted")], events
    assert state() == before
    assert lab.ping("cn-home", HOME)[0] == 3

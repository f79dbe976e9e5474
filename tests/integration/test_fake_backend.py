"""`dataplane.backend = "fake"` at a foreign agent and at a mobile node: the daemon
registers (the protocol runs) and its namespace's kernel is left exactly as it was: no
route, rule, link, address, permanent or proxy neighbour, iptables chain, ipset, nftables
table or sysctl of mipro's (before, `fake` quietly meant `auto` for these two roles)."""

from mipro.lab.cli import load_check

FA1 = "198.51.100.1"
COA = "198.51.100.150"
SYSCTLS = r"net\.ipv4\.(ip_forward|conf\..*\.(rp_filter|send_redirects|proxy_arp|" \
          r"accept_local)|neigh\..*\.proxy_delay)$"


def kernel(lab, node) -> dict:
    """Everything a dataplane could have programmed in ``node``."""
    def out(*cmd):
        return lab.exec(node, *cmd, check=False).stdout

    def lines(*cmd):
        return sorted(x for x in out(*cmd).splitlines() if x.strip())

    iptables = {}  # rules and chains, not counters; python-iptables is libiptc: legacy
    for save in ("iptables-legacy-save", "iptables-save"):
        for table in ("raw", "mangle", "filter", "nat"):
            iptables[save, table] = [x.split(" [")[0] for x in lines(save, "-t", table)
                                     if not x.startswith("#")]
    sysctls = [x for x in lines("sysctl", "-a", "-r", SYSCTLS)]
    return {
        "routes": lines("ip", "-4", "route", "show", "table", "all"),
        "rules": lines("ip", "-4", "rule"),
        "links": lines("ip", "-br", "link"),
        "addresses": lines("ip", "-4", "-br", "addr"),
        "neighbours": lines("ip", "neigh", "show", "nud", "permanent")
        + lines("ip", "neigh", "show", "proxy"),
        "iptables": iptables,
        "ipsets": lines("ipset", "list", "-n"),
        "nft": lines("nft", "list", "tables"),
        "sysctls": sysctls,
    }


def fake(lab, node, name):
    path = lab.conf(node, name)
    path.write_text(path.read_text() + '\n[dataplane]\nbackend = "fake"\n')


def test_a_fake_foreign_agent_relays_and_programs_nothing(make_lab):
    lab = make_lab("handover", services=False)
    fake(lab, "fa1", "fa.toml")
    before = kernel(lab, "fa1")
    for name in ("ha", "fa1", "mn"):
        lab.start_service(name)
    check = load_check("handover")
    lab.wait_for(lambda: check.via(lab, FA1), 30, "registration through the fake FA1")
    status = lab.status("fa1")
    assert status["dataplane"] == "fake"
    assert [v["state"] for v in status["visitors"]] == ["accepted"]
    assert kernel(lab, "fa1") == before
    assert lab.stop_service("fa1") == 0
    assert kernel(lab, "fa1") == before


def test_a_fake_mobile_node_registers_and_programs_nothing(make_lab):
    lab = make_lab("colocated", services=False)
    # a static care-of address the operator put there: the fake MN adds none itself
    lab.exec("mn", "ip", "addr", "add", f"{COA}/24", "dev", "eth0")
    lab.exec("mn", "ip", "route", "add", "default", "via", "198.51.100.1")
    lab.edit_conf("mn", "mn.toml", 'care_of = "dhcp"',
                  f'care_of = "static"\naddress = "{COA}/24"\ngateway = "198.51.100.1"')
    fake(lab, "mn", "mn.toml")
    before = kernel(lab, "mn")
    lab.start_service("ha")
    lab.start_service("mn")
    check = load_check("colocated")
    both = lab.wait_for(lambda: check.registered(lab), 30, "registration of the fake MN")
    assert both["mn"]["dataplane"] == "fake"
    assert both["ha"]["bindings"][0]["care_of_address"] == COA
    assert kernel(lab, "mn") == before
    assert lab.stop_service("mn") == 0  # it deregisters, and still touches nothing
    lab.wait_for(lambda: lab.status("ha")["bindings"] == [], 10, "deregistration")
    assert kernel(lab, "mn") == before

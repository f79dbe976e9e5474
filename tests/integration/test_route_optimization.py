"""Route optimization (Figs. 3a, 4, 5, 6a): routes and filters from the HA, applied by FA1."""


from mipro.lab.cli import load_check

HOME = "10.1.0.100"


def check_module():
    return load_check("ro")


def test_route_optimization_and_mobile_firewall(make_lab):
    """Local site direct with zero packets through the HA, home and internet through the
    tunnel, SIP/RTP dropped both ways, HTTP logged; RO off sends the local traffic home;
    deregistration removes the rules, tables and chains (asserted inside the check)."""
    lab = make_lab("ro")
    check_module().run(lab, say=lambda s: None)


def test_everything_goes_with_the_visitor(make_lab):
    lab = make_lab("ro")
    check = check_module()
    visitor = lab.wait_for(lambda: check.registered(lab), 30, "registration with routes")
    table = visitor["applied"]["table"]
    text = lab.mipro_status("fa1")  # the seed's Fig. 4 and Fig. 5 tables, as operators see them
    assert "routing table" in text and "198.51.100.0/24" in text and "tunnel to HA" in text
    assert "filter table:" in text and "udp/5060-5061" in text and "deny (both ways)" in text
    assert "agent address" in text and "accept + log" in text
    fwmark = visitor["applied"]["fwmark"]
    assert f"fwmark {fwmark} iif lan0 lookup {table}" in lab.exec("fa1", "ip", "rule").stdout
    mangle = lab.exec("fa1", "iptables-legacy", "-t", "mangle", "-S").stdout
    assert "-A MIPRO-MARK -i lan0 -m set --match-set mipro-r-" in mangle
    assert "\n10.1.0.100\n" in lab.exec("fa1", "ipset", "list").stdout + "\n"
    routes = lab.exec("fa1", "ip", "route", "show", "table", str(table)).stdout
    assert "198.51.100.0/24 dev lan0" in routes and "metric 5" in routes
    assert "default dev mipf-0a010001" in routes and "metric 100" in routes  # HA 10.1.0.1
    # the visitor's filter rules: its policy's chain, selected by the policy's ipset
    policy = visitor["applied"]["filter_counters"][0]["policy"]
    chains = lab.exec("fa1", "iptables-legacy", "-S").stdout
    assert f"-N MIPRO-P-{policy}" in chains and "-A FORWARD -j MIPRO-FWD" in chains
    assert f"-A MIPRO-FWD -i lan0 -m set --match-set mipro-p-{policy} src " \
           f"-j MIPRO-P-{policy}" in chains
    assert f"-A MIPRO-FWD -o lan0 -m set --match-set mipro-p-{policy} dst " \
           f"-j MIPRO-P-{policy}" in chains
    members = lab.exec("fa1", "ipset", "list", f"mipro-p-{policy}").stdout
    assert "\n10.1.0.100\n" in members + "\n"
    nat = lab.exec("fa1", "iptables-legacy", "-t", "nat", "-S").stdout
    assert f"-A MIPRO-NAT -m set --match-set mipro-p-{policy} src -j MIPRO-PN-{policy}" in nat
    assert f"-A MIPRO-PN-{policy} -d 198.51.100.20/32 -p tcp" in nat
    assert "--dport 8080 -j MASQUERADE" in nat
    # a flow the conntrack table knows about (a stateful rule makes the kernel track this
    # namespace's traffic), then the MN leaves
    lab.exec("fa1", "iptables-legacy", "-A", "INPUT", "-m", "conntrack", "--ctstate", "INVALID",
             "-j", "DROP")
    assert lab.ping("mn", "198.51.100.20")[0] == 3
    assert "10.1.0.100" in lab.exec("fa1", "conntrack", "-L", check=False).stdout
    lab.stop_service("mn")
    lab.wait_for(lambda: not lab.status("fa1")["visitors"], 10, "visitor removal")
    assert f"lookup {table}" not in lab.exec("fa1", "ip", "rule").stdout
    assert "MIPRO-MARK -i" not in lab.exec("fa1", "iptables-legacy", "-t", "mangle", "-S").stdout
    assert lab.exec("fa1", "ip", "route", "show", "table", str(table),
                    check=False).stdout.strip() == ""
    assert "MIPRO-P-" not in lab.exec("fa1", "iptables-legacy", "-S").stdout  # last member
    assert "MIPRO-PN-" not in lab.exec("fa1", "iptables-legacy", "-t", "nat", "-S").stdout
    assert "mipro-p-" not in lab.exec("fa1", "ipset", "list", "-n").stdout
    # its realm (the HA's tunnel device, zone and connmark rules, next-hop alias) too
    assert "mipf-0a010001" not in lab.exec("fa1", "ip", "-o", "link").stdout
    assert "169.254." not in lab.exec("fa1", "ip", "neigh", "show", "dev", "lan0").stdout
    assert "mipro-h-" not in lab.exec("fa1", "ipset", "list", "-n").stdout
    assert "--zone-orig" not in lab.exec("fa1", "iptables-legacy", "-t", "raw", "-S").stdout
    lab.wait_for(lambda: "10.1.0.100" not in lab.exec("fa1", "conntrack", "-L",
                                                      check=False).stdout, 5, "conntrack flush")
    # and when the FA stops, its own chains go too
    lab.stop_service("fa1")
    assert "MIPRO" not in lab.exec("fa1", "iptables-legacy", "-S").stdout
    assert "MIPRO" not in lab.exec("fa1", "iptables-legacy", "-t", "nat", "-S").stdout
    assert "MIPRO" not in lab.exec("fa1", "iptables-legacy", "-t", "mangle", "-S").stdout
    assert "MIPRO" not in lab.exec("fa1", "iptables-legacy", "-t", "raw", "-S").stdout
    assert "mipro" not in lab.exec("fa1", "ipset", "list", "-n").stdout


def test_colocated_mobile_node_applies_its_profile(make_lab):
    """Figs. 9a-12a: routes across the two interfaces by cost, filters on the MN itself,
    all removed on deregistration (asserted inside the scenario check)."""
    module = load_check("ro-colocated")
    lab = make_lab("ro-colocated")
    module.run(lab, say=lambda s: None)


def test_colocated_renewal_touches_nothing(make_lab):
    """A renewal that keeps encapsulation, endpoints and profile changes nothing at the MN:
    no link, address, route or rule is deleted (not even for a moment), the tunnel keeps
    its interface index, the firewall keeps its counters."""
    import subprocess
    import threading

    lab = make_lab("ro-colocated", services=False)
    lab.edit_conf("mn", "mn.toml", "lifetime = 600", "lifetime = 4")  # renewals at 3.2 s
    for name in ("dnsmasq", "ha", "mn"):
        lab.start_service(name)
    check = load_check("ro-colocated")
    lab.wait_for(lambda: check.registered(lab), 40, "registration")
    lab.wait_for(lambda: "MIPRO-V-0a010064" in lab.exec("mn", "iptables-legacy", "-S").stdout,
                 5, "the MN's filters")

    def state():
        mn = lab.exec
        return {"link": mn("mn", "ip", "-o", "link", "show", "mip0").stdout.split(":")[0],
                "addresses": mn("mn", "ip", "-o", "addr", "show").stdout,
                "routes": mn("mn", "ip", "route", "show", "table", "all").stdout,
                "rules": mn("mn", "ip", "rule").stdout,
                "iptables": [mn("mn", "iptables-legacy", "-t", t, "-S").stdout
                             for t in ("filter", "mangle", "nat")]}

    def counters():  # packets through the MN's jump to its filter chain
        out = lab.exec("mn", "iptables-legacy", "-L", "MIPRO-MN", "-v", "-x", "-n").stdout
        return sum(int(line.split()[0]) for line in out.splitlines()[2:] if line.strip())

    before = state()
    assert lab.ping("mn", "10.1.0.10")[0] == 3
    counted = counters()
    assert counted > 0
    renewals = sum("event=renewed" in x for x in lab.log_lines("mn"))
    monitor = subprocess.Popen(["ip", "netns", "exec", lab.ns("mn"), "ip", "-o", "monitor",
                                "link", "address", "route", "rule"],
                               stdout=subprocess.PIPE, text=True)
    events: list[str] = []
    reader = threading.Thread(target=lambda: events.extend(monitor.stdout), daemon=True)
    reader.start()
    marker = ("192.0.2.234", "dev", "lo", "table", "4999")  # a route of the test's own

    def monitor_shows(route):
        """Add ``route`` (again, until the monitor shows it: it may not be listening yet)
        and delete it; True once the monitor has shown it being added."""
        lab.exec("mn", "ip", "route", "del", *route, check=False)  # a replace by the same
        lab.exec("mn", "ip", "route", "add", *route)  # route need not be told again
        return any(e.startswith("192.0.2.234 ") for e in events)
    try:
        lab.wait_for(lambda: monitor_shows(marker), 15, "the monitor to listen")
        lab.exec("mn", "ip", "route", "del", *marker)
        lab.wait_for(lambda: sum("event=renewed" in x for x in lab.log_lines("mn")) >=
                     renewals + 2, 15, "two renewals")
        # the marker again, after the renewals: once the monitor shows it, it has shown
        # everything the renewals did (netlink tells of changes in order)
        shown = len(events)
        lab.exec("mn", "ip", "route", "add", *marker)
        lab.wait_for(lambda: any(e.startswith("192.0.2.234 ") for e in events[shown:]), 5,
                     "the monitor to show what the renewals did")
    finally:
        monitor.terminate()
        monitor.wait(5)
        reader.join(5)
        lab.exec("mn", "ip", "route", "del", *marker, check=False)
    events = [e for e in events if "192.0.2.234" not in e]  # the marker's own
    assert not [e for e in events if e.startswith("Deleted")], events
    assert state() == before
    assert counters() >= counted  # not reset by a rebuilt chain

"""Overlapping address realms at the foreign agent (seed Figs. 3c, 4, 5)."""


from mipro.lab.cli import load_check

HOME = "10.1.0.100"


def check_module():
    return load_check("overlap")


def test_overlapping_realms_and_what_is_left_when_the_mobile_nodes_leave(make_lab):
    """The scenario's checks: (a) CN-overlap shares CN-home's address on the visited link
    and the MN's traffic to it goes through the tunnel to CN-home (captures on both), both
    ways; (c) MN and MN2 share a home address and each gets its own tunnel's and its own
    local flows' traffic (captures, answers, conntrack zones); (b) CN-self has their
    address and each reaches it through FA1's temporary address (captures, answers, TCP).
    Then MN2 leaves: its state goes, MN's flows survive and MN is matched by its address
    again; then MN leaves: nothing of either is left at FA1 or on the mobile nodes."""
    lab = make_lab("overlap")
    check = check_module()
    check.run(lab, say=lambda s: None)
    fa = lab.status("fa1")
    tables = {v["mac"]: v["applied"]["table"] for v in fa["visitors"]}
    twins = lab.exec("fa1", "iptables-legacy", "-t", "raw", "-S", "MIPRO-TWIN").stdout
    assert twins.count("--mac-source") == 2 and "--zone-orig" in twins, twins
    text = lab.mipro_status("fa1")  # Fig. 4 as operators see it
    assert text.count("NAT index: conntrack zone") == 2 and "matched by MAC" in text, text
    assert "172.16.5.1 @zone 1" in text and "172.16.5.1 @zone 2" in text, text
    nat = lab.exec("fa1", "iptables-legacy", "-t", "nat", "-S", "MIPRO-SELF").stdout
    assert f"-s {HOME}/32 -d {HOME}/32 -j SNAT --to-source 172.16.5.1" in nat, nat
    assert f"from {HOME} to {HOME} iif lan0 lookup main" in lab.exec("fa1", "ip",
                                                                       "rule").stdout
    mn_rules = lab.exec("mn", "ip", "rule").stdout
    assert f"99:\tfrom all to {HOME} iif lo lookup 434" in mn_rules and \
        "100:\tfrom all lookup local" in mn_rules and not mn_rules.startswith("0:"), mn_rules

    # a flow of each at the local correspondent, then MN2 leaves
    echo = lab.udp_echo("cn-local-a", 30)
    for node in ("mn", "mn2"):
        assert lab.udp_ask(node, "198.51.100.20", node, f"{HOME}:6000")
    assert lab.stop_service("mn2") == 0
    mn2_rules = lab.exec("mn2", "ip", "rule").stdout  # its local rule back in place
    assert mn2_rules.startswith("0:\tfrom all lookup local") and " iif lo " not in mn2_rules \
        and "100:" not in mn2_rules, mn2_rules
    assert lab.exec("mn2", "sysctl", "-n", "net.ipv4.conf.eth0.accept_local").stdout.strip() \
        == "0"
    lab.wait_for(lambda: len(lab.status("fa1")["visitors"]) == 1, 10, "MN2 to go")
    flows = lambda: lab.exec("fa1", "conntrack", "-L", check=False).stdout  # noqa: E731
    lab.wait_for(lambda: "zone-orig=2" not in flows(), 5, "MN2's flows to be forgotten")
    assert "zone-orig=1" in flows(), flows()  # MN's flow at the correspondent lives on
    assert "--mac-source" not in lab.exec("fa1", "iptables-legacy", "-t", "raw", "-S",
                                          "MIPRO-TWIN").stdout
    assert f"\n{HOME}\n" in lab.exec("fa1", "ipset", "list", "mipro-h-1").stdout + "\n"
    assert "mipf-0a010002" not in lab.exec("fa1", "ip", "-o", "link").stdout  # HA2's realm
    assert lab.udp_ask("mn", "198.51.100.20", "mn-again", f"{HOME}:6000").startswith(
        f"mn-again seen from {HOME}:6000")
    echo.kill()

    assert lab.stop_service("mn") == 0
    lab.wait_for(lambda: not lab.status("fa1")["visitors"], 10, "the visitor to go")
    rules = lab.exec("fa1", "ip", "rule").stdout
    assert all(f"lookup {t}" not in rules for t in tables.values()), rules
    assert "mipro-" not in lab.exec("fa1", "ipset", "list", "-n").stdout
    assert "169.254." not in lab.exec("fa1", "ip", "neigh", "show", "dev", "lan0").stdout
    assert "mipf-" not in lab.exec("fa1", "ip", "-o", "link").stdout
    lab.wait_for(lambda: HOME not in flows(), 5, "MN's flows to be forgotten")
    for table in ("raw", "mangle", "filter", "nat"):
        text = lab.exec("fa1", "iptables-legacy", "-t", table, "-S").stdout
        assert "--mac-source" not in text and "zone-orig" not in text and \
            "--set-xmark 0x100/0xff00" not in text and "SNAT" not in text, (table, text)
    assert f"from {HOME} to {HOME}" not in lab.exec("fa1", "ip", "rule").stdout

"""Home agent redundancy (seed Fig. 13) with real keepalived, in the `failover` lab.

Each test builds the lab without its daemons and starts the ones it needs; the
subscribers are the load generator's (bench/regload.py), registering from
CN-internet to the virtual address."""

import json
import signal
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from mipro.lab import Lab
from mipro.lab.cli import load_check

from .conftest import kernel_state

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/keepalived").exists(),
                                reason="keepalived is not installed (make setup installs it)")

REGLOAD = Path(__file__).resolve().parents[2] / "bench" / "regload.py"
VIP, GEN = "10.1.0.1", "203.0.113.10"
HA1_SYNC, HA2_SYNC = "10.9.0.2", "10.9.0.3"


def prepare(lab: Lab, n: int) -> None:
    """n subscribers (the generator's) on both home agents; no flood limits in the way
    of one generator's thousands of registrations a second."""
    from bench.regload import home_of, mn_key

    text = "".join(f'[[subscriber]]\nhome_address = "{home_of(i)}"\nmax_lifetime = 3600\n'
                   f'sa = [{{ spi = {256 + i}, key = "hex:{mn_key("bench", i).hex()}" }}]\n'
                   for i in range(n))
    for ha in ("ha1", "ha2"):
        lab.conf(ha, "subscribers.toml").write_text(text)
        lab.edit_conf(ha, "ha.toml", 'home_network = "10.1.0.0/24"',
                      'home_network = "10.0.0.0/8"')
        with open(lab.conf(ha, "ha.toml"), "a") as fh:
            fh.write("\n[ha.limits]\nper_source = 1000000.0\nper_source_burst = 1000000.0\n"
                     "unknown_sources = 1000000.0\nkernel = false\n")


def start(lab: Lab, *names: str) -> None:
    for name in names:
        lab.start_service(name)


def role(lab: Lab, ha: str) -> str | None:
    groups = (lab.status(ha).get("redundancy") or {}).get("groups") or [{}]
    return groups[0].get("role")


def wait_role(lab: Lab, ha: str, want: str, timeout: float = 20) -> None:
    lab.expect(ha, {"redundancy": {"groups": [{"role": want, "in_sync": True}]}}, timeout,
               f"{ha} {want} and in sync")


def register(lab: Lab, n: int, phase: str = "new") -> dict:
    out = lab.exec("cn-inet", lab.python, str(REGLOAD), "--ha", VIP, "--coa", GEN, "--n",
                   str(n), "--phase", phase, timeout=300).stdout
    result = json.loads(out)
    assert result["lost"] == 0 and result["codes"] == {"0": n}, result
    return result


def bindings(lab: Lab, ha: str) -> dict[str, tuple]:
    return {b["home_address"]: (b["care_of_address"], b["lifetime"], b["in_kernel"])
            for b in lab.status(ha)["bindings"]}


def partitioned(lab: Lab) -> list[tuple[str, ...]]:
    """HA1 primary and HA2 backup with the 5 generator MNs' bindings, then a partition:
    neither hears the other's VRRP and the sync link is cut (at HA2), until HA2 is
    primary too.  Returns the iptables rules that make it, (node, chain, *match)."""
    start(lab, "ha1", "keepalived1")
    wait_role(lab, "ha1", "master")
    start(lab, "ha2", "keepalived2")
    wait_role(lab, "ha2", "backup")
    register(lab, 5)
    lab.expect("ha2", {"counters": {"replicated": ">= 5"}}, 10, "HA2 to have the bindings")
    cut = [("ha1", "INPUT", "-p", "vrrp"), ("ha2", "INPUT", "-p", "vrrp"),
           ("ha2", "INPUT", "-i", "sync0"), ("ha2", "OUTPUT", "-o", "sync0")]
    for node, chain, *match in cut:
        lab.exec(node, "iptables", "-I", chain, *match, "-j", "DROP")
    lab.expect("ha2", {"redundancy": {"session": "down", "groups": [{"role": "master"}]}}, 20,
               "HA2 primary too, its session down")
    return cut


def mipro_kernel(lab: Lab, node: str) -> dict:
    """What mipro changes in a home agent's kernel (keepalived's VMAC link aside)."""
    state = kernel_state(lab, node)
    state["links"] = [x for x in state["links"] if not x.startswith("vrrp.")]
    return state


def binding_state(lab: Lab, node: str) -> dict:
    """Binding state only: the routes in mipro's table and the proxy ARP entries (a
    backup's dataplane is up, its rule and tunnel device in place, ready to take over)."""
    k = kernel_state(lab, node)
    return {"table": k["table"], "proxies": k["proxies"]}


def test_failover_scenario_and_what_each_kernel_holds(make_lab):
    """The scenario's checks (expect.json), then: the restarted HA1 is backup and has no
    binding in its kernel; HA2, primary, has both (routes and proxy ARP entries)."""
    lab = make_lab("failover")
    load_check("failover").run(lab, say=lambda s: None)
    ha1, ha2 = mipro_kernel(lab, "ha1"), mipro_kernel(lab, "ha2")
    assert not ha1["table"] and not ha1["proxies"], ha1
    assert len(ha2["table"]) == 2 and len(ha2["proxies"]) == 2, ha2
    scrape = ("import urllib.request;print(urllib.request.urlopen("
              "'http://10.9.0.3:9434/metrics',timeout=5).read().decode())")
    metrics = lab.exec("ha2", lab.python, "-c", scrape).stdout
    assert 'mipro_redundancy_group_master{address="10.1.0.1",vrid="51"} 1.0' in metrics
    assert 'mipro_replication_session{state="up"} 1.0' in metrics
    text = lab.mipro_status("ha2")  # what an operator reads
    assert "redundancy: peer 10.9.0.2 (from 10.9.0.3), session up" in text, text
    assert "VRID 51 10.1.0.1 (VI_HA): master, in sync" in text, text


def test_a_backup_starting_late_gets_10000_bindings_by_dump(make_lab):
    """HA1 alone registers 10,000 MNs; HA2 starts, asks for a data dump and holds all of
    them (care-of address, lifetime, replay state) in its table and none in its kernel;
    keepalived keeps it out of the election until then (track file)."""
    n = 10_000
    lab = make_lab("failover", services=False)
    prepare(lab, n)
    empty = binding_state(lab, "ha2")
    start(lab, "ha1", "keepalived1")
    wait_role(lab, "ha1", "master")
    register(lab, n)
    lab.wait_for(lambda: len(lab.status("ha1")["bindings"]) == n, 30, "HA1's bindings")
    t0 = time.time()
    start(lab, "ha2")
    lab.expect("ha2", {"redundancy": {"session": "up", "groups": [{"in_sync": True}]},
                       "counters": {"replicated": f">= {n}"}}, 60, "HA2 in sync by a dump")
    took = time.time() - t0
    assert Path(lab.run_dir / "ha2-sync-51").read_text().strip() == "0"
    start(lab, "keepalived2")
    wait_role(lab, "ha2", "backup")
    primary, backup = bindings(lab, "ha1"), bindings(lab, "ha2")
    assert len(backup) == n
    assert {h: v[:2] for h, v in backup.items()} == {h: v[:2] for h, v in primary.items()}
    assert not any(v[2] for v in backup.values())  # none in HA2's kernel
    assert binding_state(lab, "ha2") == empty
    assert took < 30, took  # generous: what matters is that it completes (bench/ measures)


def test_data_forward_loses_nothing_with_5_percent_loss_on_the_sync_link(make_lab):
    lab = make_lab("failover", services=False)
    n = 2000
    prepare(lab, n)
    start(lab, "ha1", "ha2", "keepalived1", "keepalived2")
    wait_role(lab, "ha1", "master", 30)
    wait_role(lab, "ha2", "backup")
    for chain, port in (("INPUT", "--dport"), ("OUTPUT", "--sport")):
        lab.exec("ha2", "iptables-legacy", "-I", chain, "-p", "tcp", port, "4340", "-m",
                 "statistic", "--mode", "random", "--probability", "0.05", "-j", "DROP")
    register(lab, n)
    register(lab, n, "renew")
    lab.wait_for(lambda: bindings(lab, "ha2").keys() == bindings(lab, "ha1").keys() and
                 len(bindings(lab, "ha2")) == n, 60, "HA2 to hold every binding")
    dropped = lab.exec("ha2", "iptables-legacy", "-L", "INPUT", "-v", "-x", "-n").stdout
    assert int(dropped.splitlines()[2].split()[0]) > 0, dropped  # the loss happened
    # the table matches after the first pass already; the renewals' records may still be
    # on their way (a lost segment is retransmitted): count once HA2 acknowledged them all
    lab.wait_for(lambda: lab.status("ha1")["redundancy"]["lag_messages"] == 0, 30,
                 "HA1's records all acknowledged")
    forwarded = lab.status("ha2")["redundancy"]["groups"][0]["blocks_received"]
    assert forwarded >= 2 * n, forwarded  # every new registration and every renewal


def test_forged_and_replayed_sync_from_a_third_host_change_nothing(make_lab):
    """From the sync link: a stranger's connection is refused; a host that takes HA1's
    address (HA1 down) gets a session only as far as the hellos: a forged record, a
    replay of HA1's real session and a hello left hanging each close it.  HA2's table,
    kernel and role do not change, and its log has a few lines, not one per attempt."""
    lab = make_lab("failover", services=False)
    prepare(lab, 20)
    start(lab, "ha1", "ha2", "keepalived1", "keepalived2")
    wait_role(lab, "ha1", "master", 30)
    wait_role(lab, "ha2", "backup")
    register(lab, 20)
    lab.wait_for(lambda: len(bindings(lab, "ha2")) == 20, 10, "HA2's copy")

    def stranger(data: bytes, src: str, wait: float = 1.0) -> bytes:
        code = ("import socket,sys,time;s=socket.create_connection"
                f"(('{HA2_SYNC}',4340),3,('{src}',0));s.settimeout({wait})\n"
                f"s.sendall(bytes.fromhex('{data.hex()}'))\n"
                "got=b''\ntry:\n  while (c:=s.recv(4096)): got+=c\n"
                "except (TimeoutError, ConnectionResetError): pass\nprint(got.hex())")
        return bytes.fromhex(lab.exec("rogue", lab.python, "-c", code).stdout.strip())

    refused = lab.status("ha2")["redundancy"]["refused_connections"]
    assert stranger(b"MIPRO-HA-SYNC\x01" + bytes(16), "10.9.0.66") == b""
    assert lab.status("ha2")["redundancy"]["refused_connections"] == refused + 1

    lab.stop_service("keepalived1")
    lab.stop_service("ha1")
    wait_role(lab, "ha2", "master")
    before, kernel = bindings(lab, "ha2"), binding_state(lab, "ha2")
    # HA1's address on the sync link, now the stranger's
    lab.exec("ha1", "ip", "addr", "del", f"{HA1_SYNC}/24", "dev", "sync0")
    lab.exec("rogue", "ip", "addr", "add", f"{HA1_SYNC}/24", "dev", "eth0")
    lab.exec("ha2", "ip", "neigh", "flush", "dev", "sync0")
    from mipro.core.replication import Session
    from mipro.wire.sync import SyncMessage, SyncType

    forger = Session(b"a guess at the key, 32 bytes lo", True, bytes(range(16)))
    hello = forger.hello()
    forger.feed(b"MIPRO-HA-SYNC\x01" + bytes(16), 0)  # whatever HA2 says: a key of its own
    empty_dump = SyncMessage(SyncType.DUMP, 51, 255, (IPv4Address(VIP),), primary=True)
    answer = stranger(hello + forger.message(empty_dump, 0), HA1_SYNC)
    # HA2's hello, and its proof of the key if it read our hello apart from the forgery:
    # never a record with data
    assert answer.startswith(b"MIPRO-HA-SYNC\x01") and len(answer) in (30, 30 + 45), answer
    # HA1's own session, as the capture of the sync link recorded it, replayed
    from scapy.all import IP, TCP, rdpcap

    recorded = b"".join(bytes(p[TCP].payload) for p in rdpcap(str(lab.out / "ha2-sync0.pcap"))
                        if TCP in p and p[IP].src == HA1_SYNC and p[TCP].dport == 4340)
    assert len(recorded) > 100
    stranger(recorded, HA1_SYNC)
    stranger(hello, HA1_SYNC, wait=7)  # then nothing: dropped after the handshake timeout
    for _ in range(20):
        stranger(b"\x00" * 64, HA1_SYNC, wait=0.2)
    status = lab.status("ha2")
    assert status["redundancy"]["refused_records"] >= 22, status["redundancy"]
    assert status["redundancy"]["session"] == "down"
    assert bindings(lab, "ha2") == before and binding_state(lab, "ha2") == kernel
    assert role(lab, "ha2") == "master"
    lines = [x for x in lab.log_lines("ha2") if "event=redundancy-record-refused" in x]
    # rate-limited (5 per 10 s window; this test spans two): a summary counts the rest
    assert 2 <= len(lines) <= 10 < status["redundancy"]["refused_records"], lines


def test_master_backup_master_leaves_no_orphaned_kernel_state(make_lab):
    lab = make_lab("failover", services=False)
    prepare(lab, 50)
    clean = {ha: mipro_kernel(lab, ha) for ha in ("ha1", "ha2")}
    none = {"table": [], "proxies": []}
    start(lab, "ha1", "ha2", "keepalived1", "keepalived2")
    wait_role(lab, "ha1", "master", 30)
    wait_role(lab, "ha2", "backup")
    register(lab, 50)

    def holds(ha: str) -> bool:
        k = mipro_kernel(lab, ha)
        return len(k["table"]) == 50 and len(k["proxies"]) == 50

    lab.wait_for(lambda: holds("ha1"), 10, "HA1's kernel to hold 50 bindings")
    assert binding_state(lab, "ha2") == none
    lab.stop_service("keepalived1")  # HA1 backup (keepalived says STOP), HA2 takes over
    lab.wait_for(lambda: holds("ha2"), 15, "HA2's kernel to hold 50 bindings")
    lab.wait_for(lambda: binding_state(lab, "ha1") == none, 10,
                 "HA1's kernel to hold no binding")
    start(lab, "keepalived1")
    wait_role(lab, "ha1", "backup")
    lab.stop_service("keepalived2")  # and back
    lab.wait_for(lambda: holds("ha1"), 15, "HA1's kernel to hold 50 bindings again")
    lab.wait_for(lambda: binding_state(lab, "ha2") == none, 10, "HA2's kernel to hold none")
    register(lab, 50, "renew")  # HA1 answers again
    assert lab.stop_service("ha1") == 0 and lab.stop_service("ha2") == 0
    for ha in ("ha1", "ha2"):
        assert mipro_kernel(lab, ha) == clean[ha], ha


def holds(lab: Lab, ha: str, n: int) -> bool:
    """Whether the home agent's kernel holds n bindings (routes and proxy ARP entries)."""
    k = mipro_kernel(lab, ha)
    return len(k["table"]) == n and len(k["proxies"]) == n


def fdb(lab: Lab) -> dict[str, str]:
    """The home bridge's learned MAC addresses: MAC -> port."""
    rows = json.loads(lab.exec("sw", "bridge", "-j", "fdb", "show", "br", "br-home").stdout)
    return {r["mac"]: r["ifname"] for r in rows if "permanent" not in r.get("state", "")}


def vmac_port(lab: Lab) -> str | None:
    return fdb(lab).get("00:00:5e:00:01:33")  # VRRP's MAC for VRID 51


def port_of(lab: Lab, node: str) -> str | None:
    mac = json.loads(lab.exec(node, "ip", "-j", "link", "show", "home0").stdout)[0]["address"]
    return fdb(lab).get(mac)


def test_keepalived_killed_without_a_word_makes_the_primary_stand_down(make_lab):
    """SIGKILL of HA1's keepalived only (its two processes; mipro runs on): keepalived says
    nothing and leaves 10.1.0.1 on its VMAC link.  HA1's mipro sees the VRRP process die
    (redundancy.keepalived_pid_file, a pidfd) and stands down: role fault, no binding
    route or proxy ARP entry in its kernel, one keepalived-gone line; HA2 takes over
    with every binding.  With the VMAC link gone (the drop-in's ExecStopPost) HA2
    answers the renewals; keepalived back, HA1 is backup and in sync again."""
    n = 50
    lab = make_lab("failover", services=False)
    prepare(lab, n)
    none = {"table": [], "proxies": []}
    start(lab, "ha1", "ha2", "keepalived1", "keepalived2")
    wait_role(lab, "ha1", "master", 30)
    wait_role(lab, "ha2", "backup")
    assert lab.status("ha1")["redundancy"]["keepalived"]["running"]
    register(lab, n)
    lab.wait_for(lambda: holds(lab, "ha1", n), 10, "HA1's kernel to hold the bindings")
    lab.wait_for(lambda: len(bindings(lab, "ha2")) == n, 10, "HA2's copy")
    assert binding_state(lab, "ha2") == none
    t_kill = time.time()
    lab.stop_service("keepalived1", signal.SIGKILL)
    lab.wait_for(lambda: role(lab, "ha1") == "fault", 5, "HA1 to stand down")
    stood_down = time.time() - t_kill
    lab.wait_for(lambda: binding_state(lab, "ha1") == none, 5,
                 "HA1's kernel to hold no binding")
    # what makes it matter: keepalived left the address, HA1 still answers ARP for it
    vmac = lab.exec("ha1", "ip", "-br", "addr", "show", "dev", "vrrp.51").stdout
    assert VIP in vmac, vmac
    gone = [x for x in lab.log_lines("ha1") if "event=keepalived-gone" in x]
    assert len(gone) == 1 and "level=error" in gone[0] and "primary_for=51" in gone[0], gone
    status = lab.status("ha1")
    assert not status["redundancy"]["keepalived"]["running"]
    assert len(status["bindings"]) == n and not any(b["in_kernel"] for b in status["bindings"])
    lab.wait_for(lambda: holds(lab, "ha2", n), 15, "HA2's kernel to hold every binding")
    assert role(lab, "ha2") == "master"
    assert bindings(lab, "ha2").keys() == bindings(lab, "ha1").keys()
    lab.exec("ha1", "ip", "link", "del", "vrrp.51")  # keepalived-mipro.conf's ExecStopPost
    # the home bridge last saw the virtual MAC from HA1 (its kernel answered ARP for the
    # address): HA2's next advertisement, from that MAC, moves it
    lab.wait_for(lambda: vmac_port(lab) == port_of(lab, "ha2"), 5,
                 "the virtual MAC on HA2's port of the home bridge")
    renewals = lab.status("ha2")["counters"].get("renewals", 0)
    register(lab, n, "renew")
    assert lab.status("ha2")["counters"].get("renewals", 0) >= renewals + n
    start(lab, "keepalived1")
    wait_role(lab, "ha1", "backup", 30)
    assert lab.status("ha1")["redundancy"]["keepalived"]["running"]
    assert any("event=keepalived-found" in x for x in lab.log_lines("ha1"))
    assert binding_state(lab, "ha1") == none and holds(lab, "ha2", n)
    print(f"HA1 stood down {stood_down:.2f} s after keepalived's SIGKILL (status polled)")


SENDER = Path(__file__).with_name("mip_send.py")


def mip_send(lab: Lab, node: str, *args: str) -> dict:
    out = lab.exec(node, lab.python, str(SENDER), "--timeout", "3", *args, timeout=60).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_partition_loser_killed_before_standing_down_still_hands_over_its_replay_state(
        make_lab):
    """A partition (neither hears the other's VRRP, the sync link cut): both primary; a request
    only HA2 hears is accepted there.  HA2 is killed (mipro and keepalived, SIGKILL) before
    anything heals, so it never stands down.  Healed and restarted, HA2 finds what it owes
    in the file next to its state file and sends it on the new session: HA1, the winner,
    refuses the captured request replayed to it (133), and its bindings and kernel are
    what they were; HA2's file then owes nothing."""
    from bench.regload import home_of, mn_key
    from mipro.wire import RegistrationRequest

    lab = make_lab("failover", services=False)
    prepare(lab, 5)
    state = lab.run_dir.parent / "state"  # (a directory keepalived does not watch)
    for ha in ("ha1", "ha2"):  # the capture is replayed well after it was made
        lab.edit_conf(ha, "ha.toml", "max_lifetime = 600", "max_lifetime = 600\n"
                      "replay_window = 300")
        lab.edit_conf(ha, "ha.toml", str(lab.run_dir / f"{ha}-bindings.json"),
                      str(state / f"{ha}-bindings.json"))
    cut = partitioned(lab)
    assert role(lab, "ha1") == "master"
    before = {"bindings": {h: v[0::2] for h, v in bindings(lab, "ha1").items()},
              "kernel": binding_state(lab, "ha1")}
    # the MN's request reaches HA2 only: the home bridge floods, HA1 drops it
    lab.exec("sw", "ip", "link", "set", "br-home", "type", "bridge", "ageing_time", "0")
    lab.exec("ha1", "iptables", "-I", "INPUT", "-p", "udp", "--dport", "434", "-j", "DROP")
    home = str(home_of(0))
    captured = mip_send(lab, "cn-inet", "--ha", VIP, "--home", home, "--coa", GEN,
                        "--key", mn_key("bench", 0).hex(), "--spi", "256", "--skew", "30")
    assert captured["code"] == 0, captured  # HA2 accepted it
    owed = state / "ha2-bindings.json.replay-owed"
    assert json.loads(owed.read_text())["groups"]["51"]["primary_since"] is not None
    ident = str(RegistrationRequest.decode(bytes.fromhex(captured["sent"])).identification)
    lab.wait_for(lambda: ident in (state / "ha2-bindings.json.journal").read_text(), 5,
                 "HA2's journal to have the binding")
    lab.stop_service("ha2", signal.SIGKILL)  # a crash: no stand-down, nothing sent
    lab.stop_service("keepalived2", signal.SIGKILL)
    lab.exec("ha2", "ip", "link", "del", "vrrp.51", check=False)
    for pid_file in ("ha2-keepalived.pid", "ha2-vrrp.pid"):  # gone with a host's /run
        (lab.run_dir / pid_file).unlink(missing_ok=True)
    lab.exec("ha2", lab.python, "-m", "mipro.cli", "ha", "--cleanup", "--config",
             str(lab.conf("ha2", "ha.toml")))
    for node, chain, *match in cut:  # healed
        lab.exec(node, "iptables", "-D", chain, *match, "-j", "DROP")
    lab.exec("ha1", "iptables", "-D", "INPUT", "-p", "udp", "--dport", "434", "-j", "DROP")
    lab.exec("sw", "ip", "link", "set", "br-home", "type", "bridge", "ageing_time", "30000")
    start(lab, "ha2", "keepalived2")
    wait_role(lab, "ha2", "backup", 30)
    lab.expect("ha1", {"counters": {"replay_state_taken": ">= 1"}}, 10,
               "HA1 to take HA2's replay state")
    lab.wait_for(lambda: json.loads(owed.read_text())["groups"] == {}, 10,
                 "HA2 to owe nothing once HA1 acknowledged")
    after = {"bindings": {h: v[0::2] for h, v in bindings(lab, "ha1").items()},
             "kernel": binding_state(lab, "ha1")}
    assert after == before  # replay state only: no binding, no kernel change
    replayed = mip_send(lab, "cn-inet", "--ha", VIP, "--raw", captured["sent"])
    assert replayed["code"] == 133, replayed
    assert bindings(lab, "ha2")[home][0] == bindings(lab, "ha1")[home][0]  # resynced


@pytest.mark.parametrize("first", ["ha2", "ha1"], ids=["loser-hears-first",
                                                       "winner-hears-first"])
def test_a_partition_heals_with_the_primarys_table_and_the_losers_replay_state(make_lab,
                                                                               first):
    """A partition with real keepalived (neither hears the other's VRRP, the sync link
    cut): both primary, a request only HA2 hears is accepted there.  Healed (``first``:
    the one that hears the other's VRRP again first): HA1 (the higher priority) stays
    primary and keeps its table, HA2 stands down, sends its replay state and resyncs to
    HA1's table; the captured request replayed to HA1 is refused (133)."""
    from bench.regload import home_of, mn_key

    lab = make_lab("failover", services=False)
    prepare(lab, 5)
    for ha in ("ha1", "ha2"):  # the capture is replayed well after it was made
        lab.edit_conf(ha, "ha.toml", "max_lifetime = 600", "max_lifetime = 600\n"
                      "replay_window = 300")
    cut = partitioned(lab)
    table = {h: v[0] for h, v in bindings(lab, "ha1").items()}
    lab.exec("sw", "ip", "link", "set", "br-home", "type", "bridge", "ageing_time", "0")
    lab.exec("ha1", "iptables", "-I", "INPUT", "-p", "udp", "--dport", "434", "-j", "DROP")
    home = str(home_of(0))
    captured = mip_send(lab, "cn-inet", "--ha", VIP, "--home", home, "--coa", "203.0.113.77",
                        "--key", mn_key("bench", 0).hex(), "--spi", "256", "--skew", "30")
    assert captured["code"] == 0, captured  # HA2 accepted it: a new care-of address there
    assert bindings(lab, "ha2")[home][0] == "203.0.113.77"
    lab.exec("ha1", "iptables", "-D", "INPUT", "-p", "udp", "--dport", "434", "-j", "DROP")
    lab.exec("sw", "ip", "link", "set", "br-home", "type", "bridge", "ageing_time", "30000")
    time.sleep(2)  # (the partition lasts a while: its registration is clearly the newest)
    lab.exec(first, "iptables", "-D", "INPUT", "-p", "vrrp", "-j", "DROP")
    time.sleep(1.5)  # an advertisement of the other's has arrived
    for node, chain, *match in cut:  # healed
        if (node, chain, *match) != (first, "INPUT", "-p", "vrrp"):
            lab.exec(node, "iptables", "-D", chain, *match, "-j", "DROP")
    wait_role(lab, "ha2", "backup", 30)
    wait_role(lab, "ha1", "master", 30)
    lab.expect("ha1", {"counters": {"replay_state_taken": ">= 1"}}, 10,
               "HA1 to take HA2's replay state")
    lab.wait_for(lambda: bindings(lab, "ha2")[home][0] == table[home], 10,
                 "HA2 to resync to HA1's table")
    assert {h: v[0] for h, v in bindings(lab, "ha1").items()} == table  # the winner's table
    replayed = mip_send(lab, "cn-inet", "--ha", VIP, "--raw", captured["sent"])
    assert replayed["code"] == 133, replayed

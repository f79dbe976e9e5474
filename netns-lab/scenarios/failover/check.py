"""Checks of the `failover` scenario (seed Fig. 13a): HA1 dies, HA2 carries on.

What the daemons hold at each step is in expect.json, by phase."""

import json
import re
import signal
import time

from mipro.lab import Lab

VIP = "10.1.0.1"
MN1, MN2 = "10.1.0.100", "10.1.0.101"  # through FA1; co-located
ECHO_PORT, UDP_PORT = 5003, 7100
STREAM_SECONDS = 14


def last_request(lab: Lab, home: str) -> bytes:
    """The newest registration request for ``home`` HA1's home link carried (tcpdump's
    capture of the lab): one HA1 accepted."""
    from scapy.all import UDP, rdpcap

    found = None
    for pkt in rdpcap(str(lab.out / "ha1-home0.pcap")):
        if UDP in pkt and pkt[UDP].dport == 434:
            data = bytes(pkt[UDP].payload)
            if data[:1] == b"\x01" and data[4:8] == bytes(map(int, home.split("."))):
                found = data
    assert found is not None, f"no registration request for {home} in HA1's capture"
    return found


def replay(lab: Lab, node: str, data: bytes) -> int | None:
    """Send ``data`` to the virtual HA address from ``node``; the reply's code."""
    code = ("import socket,sys;s=socket.socket(2,2);s.settimeout(2);"
            f"s.sendto(bytes.fromhex('{data.hex()}'),('{VIP}',434))\n"
            "try: print(s.recv(2048)[1])\nexcept TimeoutError: print('none')")
    out = lab.exec(node, lab.python, "-c", code).stdout.strip()
    return None if out == "none" else int(out)


def echoed(lab: Lab) -> int:
    """Bytes the MN's end of the TCP echo session has received so far (`ss`)."""
    out = lab.exec("mn", "ss", "-Htni", "state", "established", f"sport = :{ECHO_PORT}").stdout
    return sum(int(n) for n in re.findall(r"bytes_received:(\d+)", out))


def outage(arrivals: list[list[float]], after: float) -> tuple[float, int]:
    """(longest gap in ms between datagrams after ``after``, datagrams lost)."""
    times = sorted(t for _, t in arrivals)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b > after]
    seqs = {s for s, _ in arrivals}
    lost = (max(seqs) - min(seqs) + 1 - len(seqs)) if seqs else 0
    return round(max(gaps, default=0) * 1000, 1), lost


def run(lab: Lab, say=print) -> None:
    t0 = time.time()
    lab.expect_phase("ha1-primary", 45)
    say(f"both MNs registered with 10.1.0.1 (HA1 primary, HA2 backup in sync) in "
        f"{time.time() - t0:.1f} s")
    for node, dst in (("cn-home", MN1), ("cn-inet", MN1), ("cn-home", MN2), ("cn-inet", MN2)):
        got, rtt = lab.ping(node, dst)
        assert got == 3, f"{node} -> {dst}: {got}/3"
    say("ping CN-home and CN-internet -> both MNs through HA1: 3/3 each")
    request = last_request(lab, MN2)
    ha2_before = lab.status("ha2")

    stream = lab.echo_stream("cn-home", "mn", MN1, seconds=STREAM_SECONDS, port=ECHO_PORT)
    sink = lab.udp_sink("mn2", UDP_PORT, STREAM_SECONDS + 2)
    source = lab.udp_source("cn-inet", MN2, UDP_PORT, STREAM_SECONDS, 0.01)
    lab.wait_for(lambda: echoed(lab) >= 9 * 40, 10, "the echo session to carry 40 messages")
    t_kill = time.time()
    lab.stop_service("ha1", signal.SIGKILL)
    lab.stop_service("keepalived1", signal.SIGKILL)
    # what systemd's ExecStopPost does after the daemon died: its proxy entries would
    # otherwise keep answering ARP for the MNs from HA1's MAC
    lab.exec("ha1", lab.python, "-m", "mipro.cli", "ha", "--cleanup", "--config",
             str(lab.conf("ha1", "ha.toml")))
    # a SIGKILLed keepalived leaves its VMAC link with the virtual address on it, which
    # would go on answering ARP for 10.1.0.1: a failed host's would be gone with it
    # (docs/redundancy.md: the drop-in that removes it after keepalived dies)
    lab.exec("ha1", "ip", "link", "del", "vrrp.51")
    lab.expect_phase("ha2-primary", 15)
    say(f"SIGKILL HA1's mipro and keepalived: HA2 primary with both bindings in its kernel "
        f"{time.time() - t_kill:.2f} s later")
    source.wait(STREAM_SECONDS + 10)
    arrivals = json.loads(sink.communicate(timeout=30)[0])["arrivals"]
    gap, lost = outage(arrivals, t_kill)
    assert len(arrivals) > 100 and gap < 10_000, (len(arrivals), gap)
    say(f"UDP CN-internet -> MN2 (co-located) every 10 ms: longest gap {gap} ms, "
        f"{lost} lost of {len(arrivals) + lost}")
    result = lab.echo_result(stream)
    assert result.get("ok"), result
    say(f"TCP CN-home -> MN1 (through FA1) stayed up: {result['messages']} echoes, longest "
        f"stall {result['max_stall_ms']} ms; neither MN re-registered")
    for node, dst in (("cn-home", MN1), ("cn-inet", MN2)):
        got, _ = lab.ping(node, dst)
        assert got == 3, f"{node} -> {dst} through HA2: {got}/3"

    renewals = ha2_before["counters"].get("renewals", 0)
    lab.expect("ha2", {"counters": {"renewals": f">= {renewals + 2}"}}, 40,
               "both MNs' next renewals answered by HA2")
    say("both MNs' next renewals answered by HA2")
    before = {b["home_address"]: b for b in lab.status("ha2")["bindings"]}
    denied = lab.status("ha2")["counters"].get("denied_133", 0)
    code = replay(lab, "mn2", request)
    assert code == 133, f"replayed request: {code}"
    after = lab.status("ha2")
    assert after["counters"].get("denied_133", 0) == denied + 1
    b = next(b for b in after["bindings"] if b["home_address"] == MN2)
    assert (b["care_of_address"], b["lifetime"]) == (before[MN2]["care_of_address"],
                                                     before[MN2]["lifetime"])
    say("a request HA1 had accepted, replayed to HA2: 133 (identification mismatch), "
        "binding unchanged")

    t_back = time.time()
    masters = sum("Entering MASTER" in line for line in lab.log_lines("keepalived1"))
    lab.start_service("ha1")
    lab.start_service("keepalived1")
    lab.expect_phase("ha1-back-in-sync", 30)
    say(f"HA1 back: bulk sync from HA2 in {time.time() - t_back:.2f} s, backup with both "
        "bindings in its table")
    for _ in range(10):  # no flapping: HA2 stays primary, HA1 backup
        assert lab.matches("ha1-back-in-sync"), "roles changed after HA1 came back"
        time.sleep(0.5)
    now = sum("Entering MASTER" in line for line in lab.log_lines("keepalived1"))
    assert now == masters, "HA1's keepalived became primary again"
    say("no takeover by HA1 after it came back (nopreempt), no flapping for 5 s")

"""`mipro status`: ask a daemon over its control socket and print what it says."""

from __future__ import annotations

import glob
import json
import sys

from ..runtime.control import request


def _default_socket(role: str | None) -> str | None:
    if role:
        return f"/run/mipro/{role}.sock"
    found = sorted(glob.glob("/run/mipro/*.sock"))
    return found[0] if len(found) == 1 else None


def nat_text(nat: str | None) -> str:
    if nat is None:
        return "-"
    return "agent address" if nat == "0.0.0.0" else nat


def filter_row(f: dict, zone: str) -> tuple[str, str, str, str, str]:
    proto = {0: "any", 1: "icmp", 6: "tcp", 17: "udp"}.get(f["protocol"], str(f["protocol"]))
    if f["dport"] != [0, 65535]:
        lo, hi = f["dport"]
        proto += f"/{lo}" + (f"-{hi}" if hi != lo else "")
    action = f["action"] + (" + log" if f["log"] else "") + \
        (" (both ways)" if f["both_directions"] else "")
    nat = nat_text(f["nat"]) + zone if f["nat"] is not None else "-"
    return f["source"], f["destination"], proto, nat, action


def redundancy_text(r: dict) -> str:
    """Role per virtual address, the peer, the session's lag, the last resync."""
    import time

    lines = [f"redundancy: peer {r['peer']} (from {r['local']}), session {r['session']}, "
             f"lag {r['lag_messages']} messages / {r['lag_seconds']} s"]
    for g in r["groups"]:
        when = g.get("last_resync")
        ago = f"{time.time() - when:.0f} s ago" if when else "never"
        lines.append(f"  VRID {g['vrid']} {g['address']} ({g['instance']}): {g['role']}, "
                     f"{'in sync' if g['in_sync'] else 'NOT in sync'}, last resync {ago}")
    return "\n".join(lines)


def run(socket_path: str | None, role: str | None, as_json: bool) -> int:
    path = socket_path or _default_socket(role)
    if path is None:
        print("mipro status: several or no daemons in /run/mipro; use --socket or --role",
              file=sys.stderr)
        return 2
    try:
        answer = request(path)
    except OSError as exc:
        print(f"mipro status: cannot reach {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"role: {answer.get('role')}  pid: {answer.get('pid')}  "
          f"dataplane: {answer.get('dataplane')} ({answer.get('dataplane_reason')})")
    for key in ("state", "address", "home_address", "care_of_address", "uptime"):
        if key in answer:
            print(f"{key}: {answer[key]}")
    redundancy = answer.get("redundancy")
    if redundancy:
        print(redundancy_text(redundancy))
    bindings = answer.get("bindings", [])
    if answer.get("role") != "fa":
        print(f"bindings: {len(bindings)}")
    else:
        print(f"visitors: {len(answer.get('visitors', []))}")
    if bindings:
        print(f"  {'home address':<16} {'care-of address':<16} {'left':>6} {'encap':<6} "
              f"{'rev':<4} {'pkts in/out':>13} {'bytes in/out':>17}")
        for b in bindings:
            c = b.get("counters") or {}
            pkts = f"{c.get('packets_in', '-')}/{c.get('packets_out', '-')}"
            byts = f"{c.get('bytes_in', '-')}/{c.get('bytes_out', '-')}"
            print(f"  {b['home_address']:<16} {b['care_of_address']:<16} "
                  f"{b['lifetime_left']:>5}s {b['encapsulation']:<6} "
                  f"{'yes' if b['reverse_tunnel'] else 'no':<4} {pkts:>13} {byts:>17}")
    for v in answer.get("visitors", []):
        print(f"visitor {v['home_address']} mac {v['mac']} via HA {v['home_agent']}: "
              f"{v['state']}, {v['lifetime_left']}s left, reverse tunnel "
              f"{'yes' if v['reverse_tunnel'] else 'no'}")
        applied = v.get("applied") or {}
        if v.get("routes"):  # the seed's Fig. 5
            shared = applied.get("shared_by", 0)
            print(f"  routing table {applied.get('table', '-')} (source {v['home_address']}, "
                  f"fwmark {applied.get('fwmark', '-')}"
                  + (f", shared by {shared} visitors" if shared > 1 else "") + "):")
            print(f"    {'destination':<18} {'next hop':<16} {'cost':>5}")
            for r in v["routes"]:
                hop = "tunnel to HA" if r["via"] == "tunnel" else \
                    (r["router"] if r["router"] != "0.0.0.0" else "local link")
                print(f"    {r['destination']:<18} {hop:<16} {r['cost']:>5}")
        index = applied.get("nat_index")
        if index:  # what tells this visitor's flows apart (the seed's NAT index)
            print(f"  NAT index: conntrack zone {index['zone']}, connmark {index['connmark']}"
                  f", home address + MAC ({v['home_address']} {v['mac']}"
                  + (", shared home address: matched by MAC" if index["by_mac"] else "")
                  + ")" + (f", delivered via {index['alias']} (table "
                           f"{index['delivery_table']})" if index["alias"] else ""))
        zone = f" @zone {index['zone']}" if index else ""
        rows = [filter_row(f, zone) for f in v.get("filters", [])]
        if v.get("temporary_address"):  # Fig. 4's CN 4c row: a host with the MN's address
            rows.append(("any", f"{v['home_address']}/32", "any",
                         f"{v['temporary_address']}{zone}", "accept (temporary address)"))
        if rows:  # the seed's Fig. 4
            print("  filter table:")
            print(f"    {'source':<18} {'destination':<18} {'protocol':<16} "
                  f"{'NAT index':<24} action")
            for row in rows:
                print(f"    {row[0]:<18} {row[1]:<18} {row[2]:<16} {row[3]:<24} {row[4]}")
    if answer.get("counters"):
        print("counters: " + " ".join(f"{k}={v}" for k, v in sorted(answer["counters"].items())))
    return 0

"""A home agent and a foreign agent on one host (one network namespace): each keeps to its
own kernel objects (link-name prefix, route tables, rule priorities, UDP port 434 on its
own address), removes only its own leftovers at start, and leaves the other's alone when
it restarts."""

import signal

from mipro.config import load_fa, load_ha
from mipro.dataplane.fa.agent import LINK_PREFIX as FA_LINKS
from mipro.dataplane.ha import LINK_PREFIX as HA_LINKS
from mipro.lab.cli import load_check

from .conftest import wait_binding_saved

HOME = "10.1.0.100"
FA = "192.0.2.1"


def links(lab):
    out = lab.exec("ha", "ip", "-o", "link").stdout.splitlines()
    return sorted(line.split(": ")[1].split("@")[0] for line in out)


def table(lab, number):
    return sorted(lab.exec("ha", "ip", "route", "show", "table", str(number),
                           check=False).stdout.splitlines())


def rules(lab, number):
    return sorted(line for line in lab.exec("ha", "ip", "rule").stdout.splitlines()
                  if f"lookup {number}" in line)


def logged(lab, service, event):
    return sum(f"event={event} " in line + " " for line in lab.log_lines(service))


def test_home_and_foreign_agent_in_one_namespace(make_lab):
    lab = make_lab("handover", services=False)
    # the FA of visited network B moves into the HA's namespace: fa2 leaves the link
    lab.exec("fa2", "ip", "addr", "flush", "dev", "lan0")
    lab.exec("fa2", "ip", "link", "set", "lan0", "down")
    lab.exec("ha", "ip", "link", "add", "visit0", "type", "veth", "peer", "name", "pha",
             "netns", lab.sw)
    lab.exec("sw", "ip", "link", "set", "pha", "master", "br-visit-b", "up")
    lab.exec("ha", "ip", "addr", "add", f"{FA}/24", "dev", "visit0")
    lab.exec("ha", "ip", "link", "set", "visit0", "up")
    conf = lab.conf("ha", "fa.toml")
    conf.write_text(lab.conf("fa2", "fa.toml").read_text().replace('"lan0"', '"visit0"')
                    .replace("fa2.sock", "fa-on-ha.sock"))
    conf.chmod(0o600)
    lab.spec["service"].append({"name": "fa", "node": "ha", "socket": "{run}/fa-on-ha.sock",
                                "cmd": ["{python}", "-m", "mipro.cli", "fa", "--config",
                                        str(conf)]})
    ha_dp, fa_dp = load_ha(lab.conf("ha", "ha.toml")).dataplane, load_fa(conf).dataplane
    assert (ha_dp.table, ha_dp.rule_priority) != (fa_dp.table, fa_dp.rule_priority)

    # what an earlier run of each left behind
    for prefix, dp, dst, dev in ((HA_LINKS, ha_dp, "10.1.0.77", "home0"),
                                 (FA_LINKS, fa_dp, "10.1.0.78", "visit0")):
        lab.exec("ha", "ip", "link", "add", f"{prefix}old", "type", "bridge", check=False)
        lab.exec("ha", "ip", "route", "add", dst, "dev", dev, "table", str(dp.table))
        lab.exec("ha", "ip", "rule", "add", "priority", str(dp.rule_priority), "lookup",
                 str(dp.table), check=False)
    fa_left = (table(lab, fa_dp.table), rules(lab, fa_dp.table))
    assert f"{FA_LINKS}old" in links(lab) and fa_left[0] and fa_left[1]

    lab.start_service("ha")  # removes its leftovers, not the FA's
    assert f"{HA_LINKS}old" not in links(lab) and f"{FA_LINKS}old" in links(lab)
    assert "10.1.0.77" not in " ".join(table(lab, ha_dp.table))
    assert (table(lab, fa_dp.table), rules(lab, fa_dp.table)) == fa_left
    ha_rules = rules(lab, ha_dp.table)
    assert len(ha_rules) == 1 and ha_rules[0].startswith(f"{ha_dp.rule_priority}:")

    before_fa = links(lab)
    lab.start_service("fa")  # removes its leftovers, not the HA's
    assert f"{FA_LINKS}old" not in links(lab) and table(lab, fa_dp.table) == []
    fa_rules = rules(lab, fa_dp.table)
    assert len(fa_rules) == 1 and fa_rules[0].startswith(f"{fa_dp.rule_priority}:")
    assert rules(lab, ha_dp.table) == ha_rules and "mip0" in links(lab)

    # a mobile node on visited network B registers through the FA with the HA next to it
    lab.move("mn.eth0", "visit-b")
    lab.start_service("mn")
    check = load_check("handover")
    lab.wait_for(lambda: check.via(lab, FA) and lab.status("fa")["visitors"], 30,
                 "registration through the FA on the HA's host")
    ha_objects = (table(lab, ha_dp.table), rules(lab, ha_dp.table))
    fa_objects = (table(lab, fa_dp.table), rules(lab, fa_dp.table),
                  sorted(set(links(lab)) - set(before_fa)))
    assert HOME in " ".join(ha_objects[0]) and HOME in " ".join(fa_objects[0])
    assert fa_objects[2] and all(n.startswith(FA_LINKS) for n in fa_objects[2]), fa_objects
    assert lab.ping("cn-home", HOME)[0] == 3

    # the HA restarts after a crash: it cleans up and reinstalls its own, the FA's stays
    wait_binding_saved(lab, HOME)
    cleanups = logged(lab, "ha", "reconciled-leftovers")
    lab.stop_service("ha", signal.SIGKILL)
    lab.start_service("ha")
    lab.wait_for(lambda: lab.status("ha")["bindings"], 10, "the HA's restored binding")
    assert logged(lab, "ha", "reconciled-leftovers") == cleanups + 1
    assert (table(lab, fa_dp.table), rules(lab, fa_dp.table),
            sorted(set(links(lab)) - set(before_fa))) == fa_objects
    assert (table(lab, ha_dp.table), rules(lab, ha_dp.table)) == ha_objects
    assert lab.status("fa")["visitors"]

    # and the FA after a crash: the HA's binding, route and rule stay
    cleanups = logged(lab, "fa", "reconciled-leftovers")
    lab.stop_service("fa", signal.SIGKILL)
    lab.start_service("fa")
    lab.wait_for(lambda: lab.status("fa")["visitors"] and check.via(lab, FA), 30,
                 "the visitor back at the restarted FA")
    assert logged(lab, "fa", "reconciled-leftovers") > cleanups
    assert (table(lab, ha_dp.table), rules(lab, ha_dp.table)) == ha_objects
    assert len(rules(lab, fa_dp.table)) == 1 and HOME in " ".join(table(lab, fa_dp.table))
    assert lab.ping("cn-home", HOME)[0] == 3

    # each stops cleanly and takes only its own
    lab.stop_service("mn")
    lab.stop_service("fa")
    assert rules(lab, fa_dp.table) == [] and not any(n.startswith(FA_LINKS) for n in links(lab))
    assert rules(lab, ha_dp.table) == ha_rules
    lab.stop_service("ha")
    assert rules(lab, ha_dp.table) == [] and table(lab, ha_dp.table) == []

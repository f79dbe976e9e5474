"""SIGHUP the same way in every daemon: live keys apply, restart keys keep the old file."""

import json
import sys
from pathlib import Path

from .test_colocated import wait_registered

SENDER = Path(__file__).with_name("mip_send.py")
MN_KEY = "6c61622d6d6e312d6d6e2d68612d6b6579"


def hup(lab, service, event):
    before = len(lab.log_lines(service))
    lab.exec(lab.services[service].node, "kill", "-HUP", str(lab.services[service].proc.pid))
    return lab.wait_for(lambda: [x for x in lab.log_lines(service)[before:] if event in x], 10,
                        f"{service}: {event}")


def register(lab, home_agent):
    out = lab.exec("cn-inet", sys.executable, str(SENDER), "--ha", "10.1.0.1", "--home-agent",
                   home_agent, "--home", "10.1.0.100", "--coa", "203.0.113.10", "--key",
                   MN_KEY, "--flags", "34", timeout=30).stdout
    return json.loads(out.strip().splitlines()[-1])["code"]


def test_ha_reload_refuses_a_new_address_whole(make_lab):
    """The bug: the HA logged that `address` needs a restart, then answered for the new
    address anyway while its socket stayed on the old one.  Now nothing of the new file
    applies, not even its live keys."""
    lab = make_lab("colocated", services=False)
    lab.start_service("ha")
    conf = lab.conf("ha", "ha.toml")
    conf.write_text(conf.read_text().replace('address = "10.1.0.1"', 'address = "10.1.0.2"')
                    .replace("max_lifetime = 600", "max_lifetime = 100"))
    line = hup(lab, "ha", "reload-needs-restart")[0]
    assert "keys=address" in line
    assert any("reload-kept-old-config" in x for x in lab.log_lines("ha"))
    assert register(lab, "10.1.0.1") == 0  # still the old address ...
    binding = lab.status("ha")["bindings"][0]
    assert binding["lifetime"] == 300  # ... and the old max_lifetime (600) capped nothing
    assert register(lab, "10.1.0.2") == 136


def test_live_keys_apply_in_every_daemon(make_lab):
    lab = make_lab("colocated", services=False)
    lab.start_service("ha")
    lab.start_service("dnsmasq")
    lab.start_service("mn")
    wait_registered(lab)
    lab.edit_conf("ha", "ha.toml", "max_lifetime = 600", "max_lifetime = 100")
    assert "changed=max_lifetime" in hup(lab, "ha", "event=reloaded")[0]
    assert register(lab, "10.1.0.1") == 0
    assert lab.status("ha")["bindings"][0]["lifetime"] == 100
    assert lab.status("mn")["requested_lifetime"] == 600
    lab.edit_conf("mn", "mn.toml", "lifetime = 600", "lifetime = 50")
    assert "changed=lifetime" in hup(lab, "mn", "event=reloaded")[0]
    assert lab.status("mn")["requested_lifetime"] == 50  # its next request asks for it
    assert "changed=-" in hup(lab, "mn", "event=reloaded")[0]  # nothing changed: fine
    lab.edit_conf("mn", "mn.toml", 'home_agent = "10.1.0.1"', 'home_agent = "10.1.0.9"')
    assert "keys=home_agent" in hup(lab, "mn", "reload-needs-restart")[0]
    assert lab.status("mn")["requested_lifetime"] == 50  # kept whole

"""SIGHUP the same way in every daemon: live keys apply, restart keys keep the old file."""

import json
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

from .test_colocated import wait_registered

SENDER = Path(__file__).with_name("mip_send.py")
ASKER = Path(__file__).with_name("mip_ask.py")
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


def test_ha_answers_while_a_large_subscriber_file_is_read(make_lab):
    """A SIGHUP's subscriber file is read and checked in a thread: a registration sent
    while 200,000 subscribers are being read is answered before the reload is done (it
    was answered only after: the event loop read the whole file first).  A bad file
    afterwards is refused with file, key and problem, and the store read before stays."""
    extra = 200_000
    lab = make_lab("colocated", services=False)
    lab.start_service("ha")
    subs = lab.conf("ha", "subscribers.toml")
    good = subs.read_text()
    base = int(IPv4Address("10.64.0.0"))
    with open(subs, "a") as fh:
        for i in range(extra):
            fh.write(f'[[subscriber]]\nhome_address = "{IPv4Address(base + i)}"\n'
                     f'sa = [{{ spi = 256, key = "hex:{MN_KEY}" }}]\n')
    asker = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("cn-inet"), sys.executable, str(ASKER), "10.1.0.1",
         "10.1.0.100", "203.0.113.10", MN_KEY, "34"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask():
        asker.stdin.write("go\n")
        asker.stdin.flush()
        return json.loads(asker.stdout.readline())["code"]

    try:
        assert ask() == 0  # the asker is up, and the HA answers it
        before = len(lab.log_lines("ha"))
        hup(lab, "ha", "event=reload-reading")
        assert ask() == 0
        assert not [x for x in lab.log_lines("ha")[before:] if "event=reloaded" in x], \
            "answered only once the reload was done"
        loaded = lab.wait_for(lambda: [x for x in lab.log_lines("ha")[before:]
                                       if "event=subscribers-loaded" in x], 120, "reload")
        assert f"subscribers={extra + 1}" in loaded[0]
        assert "event=reloaded" in lab.log_lines("ha")[-1]

        subs.write_text(good + '[[subscriber]]\nhome_address = "10.1.0.101"\n'
                        'sa = [{ spi = 256, key = "hex:00" }]\n')
        refused = hup(lab, "ha", "reload-kept-old-config")
        failed = [x for x in lab.log_lines("ha") if "event=reload-failed" in x]
        assert failed and str(subs) in failed[-1] and "key" in failed[-1], failed
        assert refused and ask() == 0
        assert lab.status("ha")["directory"]["subscribers"] == extra + 1  # kept
    finally:
        asker.kill()
        asker.wait()

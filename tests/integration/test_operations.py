"""Operating the daemons: sd_notify, SIGHUP reload, `mipro status`."""

import json
import signal
import socket
import subprocess
import sys

from .test_colocated import wait_registered


def test_notify_reload_and_status(make_lab, tmp_path, monkeypatch):
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(20)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
    lab = make_lab("colocated", services=False)
    lab.start_service("ha")
    assert sock.recv(256).startswith(b"READY=1")
    monkeypatch.delenv("NOTIFY_SOCKET")
    lab.start_service("dnsmasq")
    lab.start_service("mn")
    wait_registered(lab)

    # a broken config on SIGHUP: logged with file and key, old config kept
    conf = lab.conf("ha", "ha.toml")
    good = conf.read_text()
    conf.write_text(good.replace("max_lifetime = 600", "max_lifetime = \"long\""))
    pid = lab.services["ha"].proc.pid
    lab.exec("ha", "kill", "-HUP", str(pid))
    lab.wait_for(lambda: any("reload-kept-old-config" in x for x in lab.log_lines("ha")), 5,
                 "reload refusal")
    failed = [x for x in lab.log_lines("ha") if "event=reload-failed" in x]
    assert f"{conf}: ha.max_lifetime: expected an integer" in failed[0]
    assert lab.status("ha")["bindings"]  # still serving

    # a good one is taken
    conf.write_text(good)
    lab.exec("ha", "kill", "-HUP", str(pid))
    lab.wait_for(lambda: any("event=reloaded" in x for x in lab.log_lines("ha")), 5, "reload")

    # mipro status, as an operator types it
    socket_path = str(lab.run_dir / "ha.sock")
    text = subprocess.run([sys.executable, "-m", "mipro.cli", "status", "--socket", socket_path],
                          capture_output=True, text=True, check=True).stdout
    assert "role: ha" in text and "10.1.0.100" in text and "dataplane: " in text
    js = json.loads(subprocess.run([sys.executable, "-m", "mipro.cli", "status", "--json",
                                    "--socket", socket_path], capture_output=True, text=True,
                                   check=True).stdout)
    b = js["bindings"][0]
    assert js["role"] == "ha" and js["dataplane"] in ("kernel", "userspace")
    assert b["home_address"] == "10.1.0.100" and 0 < b["lifetime_left"] <= 600
    assert b["encapsulation"] == "ipip"

    lab.stop_service("mn")
    lab.stop_service("ha", signal.SIGTERM)
    assert sock.recv(256) == b"STOPPING=1"
    sock.close()


def test_start_refuses_a_bad_config(make_lab):
    lab = make_lab("colocated", services=False)
    lab.edit_conf("ha", "ha.toml", 'home_interface = "home0"', 'home_interface = 7')
    proc = lab.exec("ha", sys.executable, "-m", "mipro.cli", "ha", "--config",
                    str(lab.conf("ha", "ha.toml")), check=False)
    assert proc.returncode == 1
    assert "ha.home_interface: expected a string, got int 7" in proc.stdout
    assert lab.exec("ha", "ip", "rule").stdout.count("lookup 434") == 0

"""Overlapping address realms at the foreign agent (seed Figs. 3c, 5)."""


from mipro.lab.cli import load_check


def check_module():
    return load_check("overlap")


def test_a_local_correspondent_with_a_home_address_is_ignored(make_lab):
    """CN-overlap shares CN-home's address on the visited link: the MN's traffic to it
    goes through the tunnel to CN-home (captures on both), both ways; nothing of the MN
    is left at FA1 after it leaves."""
    lab = make_lab("overlap")
    check_module().run(lab, say=lambda s: None)
    table = lab.status("fa1")["visitors"][0]["applied"]["table"]
    assert lab.stop_service("mn") == 0
    lab.wait_for(lambda: not lab.status("fa1")["visitors"], 10, "the visitor to go")
    assert f"lookup {table}" not in lab.exec("fa1", "ip", "rule").stdout
    assert "mipro-" not in lab.exec("fa1", "ipset", "list", "-n").stdout

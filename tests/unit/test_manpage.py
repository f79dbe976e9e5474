"""mipro(8) from docs/mipro.8.rst: it renders (docutils, then groff) without a warning, and
it names what the code has, so it cannot fall behind silently: every subcommand and option
of the CLI, every signal a daemon handles, every default path under /etc, /run and
/var/lib the configuration schema and the units use, and the package's version."""

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import mipro
from mipro.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "docs" / "mipro.8.rst"
ROLES = ("ha", "fa", "mn")


def roff() -> str:
    docutils_core = pytest.importorskip("docutils.core")
    return docutils_core.publish_string(SOURCE.read_text(), source_path=str(SOURCE),
                                        writer="manpage",
                                        settings_overrides={"halt_level": 2,
                                                            "report_level": 2}).decode()


@pytest.fixture(scope="module")
def page() -> str:
    """The page as `man` shows it (plain text), or the roff source if groff is missing."""
    source = roff()
    if not shutil.which("groff"):
        return source.replace("\\-", "-")
    proc = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-P-cbou"], input=source,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return re.sub(r"-\n\s*", "-", proc.stdout.replace("\u2010", "-"))  # hyphenation undone


def section(page: str, title: str) -> str:
    start = page.index(f"\n{title}\n")
    following = re.search(r"\n[A-Z][A-Z ]+\n", page[start + len(title) + 2:])
    return page[start:start + len(title) + 2 + (following.start() if following else len(page))]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_it_is_mipro_in_section_8_of_this_version():
    source = roff()
    assert re.search(r'^\.TH "?mipro"? "?8"?', source, re.M), source[:2000]
    assert f"mipro {mipro.__version__}" in source


def test_every_subcommand_and_option_is_described(page):
    synopsis, commands = section(page, "SYNOPSIS"), section(page, "COMMANDS")
    exit_status = section(page, "EXIT STATUS")
    assert set(subcommands()) == {"ha", "fa", "mn", "check-config", "status", "decode"}
    for name, parser in subcommands().items():
        assert f"mipro {name}" in synopsis, name
        assert re.search(rf"^\s+{re.escape(name)}\b", commands, re.M), name
        assert name in exit_status, name
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in commands, f"{name} {option}"


def test_every_signal_a_daemon_handles_is_described(page):
    runtime = "".join(p.read_text() for p in (REPO / "mipro" / "runtime").glob("*.py"))
    handled = set(re.findall(r"signal\.(SIG[A-Z0-9]+)", runtime))
    assert {"SIGHUP", "SIGTERM", "SIGINT"} <= handled
    signals = section(page, "SIGNALS")
    for sig in handled:
        assert sig in signals, sig


def test_every_default_path_is_in_files(page):
    files = section(page, "FILES")
    schema = (REPO / "mipro" / "config" / "schema.py").read_text()
    paths = set(re.findall(r'"(/(?:etc|run|var/lib)/mipro/[^"{]+)"', schema))
    for template in re.findall(r'f"(/(?:etc|run|var/lib)/mipro/[^"]*\{role\}[^"]*)"', schema):
        paths |= {template.replace("{role}", role) for role in ROLES}
    paths.discard("/var/lib/mipro/fa-bindings.json")  # only the HA keeps a state file
    paths.discard("/var/lib/mipro/mn-bindings.json")
    for role in ROLES:
        unit = (REPO / "systemd" / f"mipro-{role}.service").read_text()
        paths |= set(re.findall(r"/etc/mipro/[\w.-]+", unit))
    assert "/var/lib/mipro/ha-bindings.json" in paths and "/run/mipro/fa.sock" in paths
    flat = files.replace("\n", " ")
    for path in sorted(paths):
        assert path in flat or Path(path).name in flat, path


def test_the_units_point_to_it():
    for role in ROLES:
        unit = (REPO / "systemd" / f"mipro-{role}.service").read_text()
        docs = re.search(r"^Documentation=(.*)$", unit, re.M)
        assert docs and "man:mipro(8)" in docs.group(1).split(), role

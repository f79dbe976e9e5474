"""ARCHITECTURE.md's one rule: protocol code never touches I/O."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "mipro"
PURE_PACKAGES = ["wire", "security", "core", "policy"]
FORBIDDEN = {"socket", "asyncio", "pyroute2", "iptc", "scapy", "subprocess", "select",
             "selectors", "threading", "ssl", "ldap3"}


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def pure_files() -> list[pathlib.Path]:
    return [p for pkg in PURE_PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")]


def test_pure_packages_exist():
    assert (ROOT / "wire").is_dir() and (ROOT / "security").is_dir()
    assert len(pure_files()) >= 5


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_io_imports(path):
    bad = imported_modules(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_checker_catches_a_violation(tmp_path):
    sample = tmp_path / "bad.py"
    sample.write_text("import socket\nfrom pyroute2 import IPRoute\n")
    assert imported_modules(sample) & FORBIDDEN == {"socket", "pyroute2"}


def test_a_code_is_registered_once():
    """Every numbering space is one registry, and a second class for a code is refused."""
    import pytest

    from mipro.wire import registry
    from mipro.wire.extensions import MnHaAuth, Nvse, register
    from mipro.wire.vendor import StaticRoutesExtension

    assert registry.EXTENSIONS.get(32) is MnHaAuth and registry.EXTENSIONS.get(134) is Nvse
    assert registry.VENDOR_EXTENSIONS.get(1) is StaticRoutesExtension
    assert registry.UDP434_MESSAGES.get(255) is not None
    with pytest.raises(ValueError, match="code 32 is already"):
        register(type("Impostor", (MnHaAuth,), {}))
    with pytest.raises(ValueError, match="mipro vendor extension type: code 1"):
        registry.VENDOR_EXTENSIONS.add(1, object)

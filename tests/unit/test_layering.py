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


# --- the dataplane: roles on top of mechanisms (docs/architecture.md) -----------------

DATAPLANE = "mipro.dataplane"
ROLES = {"ha", "fa", "mn"}  # ha.py, fa/, mn/: one role's kernel state each
MECHANISMS = {"kernel", "relay", "link"}  # packages any role may use
# the only imports from one mechanism into another (none is used today): the kernel's
# interfaces are the bottom, relay and link may build on them, never on each other
SIDEWAYS = {("relay", "kernel"), ("link", "kernel")}
ABOVE = {"runtime", "config", "subscribers", "lab", "tools", "cli"}  # what uses the dataplane


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(root: pathlib.Path, module: str) -> bool:
    path = root.parent / module.replace(".", "/")
    return path.is_dir() or path.with_suffix(".py").is_file()


def mipro_imports(path: pathlib.Path, root: pathlib.Path) -> set[str]:
    """The mipro modules ``path`` imports, absolute (``from . import x`` counts as x)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = {f"{module}.{a.name}" for a in node.names
                          if is_module(root, f"{module}.{a.name}")}
            out |= submodules if len(submodules) == len(node.names) else submodules | {module}
    return {m for m in out if m == root.name or m.startswith(root.name + ".")}


def layer(module: str) -> str | None:
    """The dataplane layer of a module: a role, a mechanism, "fake", "package" (the
    dataplane's __init__: constants), or None outside the dataplane."""
    if module == DATAPLANE:
        return "package"
    if not module.startswith(DATAPLANE + "."):
        return None
    first = module.split(".")[2]
    return first if first in ROLES | MECHANISMS | {"fake"} else f"unplaced:{first}"


def dataplane_violations(root: pathlib.Path) -> list[str]:
    """Every import that breaks the dataplane's layering, as "importer -> imported: why"."""
    problems = []
    for path in sorted((root / "dataplane").rglob("*.py")):
        me = module_name(path, root)
        mine = layer(me)
        if mine.startswith("unplaced"):
            problems.append(f"{me}: neither a role (ha.py, fa/, mn/), a mechanism (kernel/, "
                            "relay/, link/) nor fake.py: see docs/architecture.md")
            continue
        for target in sorted(mipro_imports(path, root)):
            theirs, top = layer(target), target.split(".")[1] if "." in target else ""
            why = None
            if theirs is None:
                if top in ABOVE:
                    why = f"the dataplane is below {top}/"
                elif mine in MECHANISMS and top not in {"wire"}:
                    why = "a mechanism uses the codec (wire/) at most, not the engines"
            elif theirs in ("package", mine):
                continue
            elif mine == "package":
                why = "the package's __init__ holds constants, it imports nothing"
            elif theirs == "fake":
                why = "only the runtime and tests choose the fake"
            elif mine in MECHANISMS and theirs in ROLES:
                why = "a mechanism never imports a role"
            elif mine in MECHANISMS and (mine, theirs) not in SIDEWAYS:
                why = f"mechanisms do not import each other (allowed: {sorted(SIDEWAYS)})"
            elif mine in ROLES | {"fake"} and theirs in ROLES:
                why = "a role never imports another role (shared code is a mechanism's)"
            if why:
                problems.append(f"{me} -> {target}: {why}")
    return problems


def test_dataplane_roles_sit_on_mechanisms():
    assert dataplane_violations(ROOT) == []


def test_every_dataplane_layer_exists():
    layers = {layer(module_name(p, ROOT)) for p in (ROOT / "dataplane").rglob("*.py")}
    assert layers == ROLES | MECHANISMS | {"fake", "package"}


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_packages_are_below_the_dataplane(path):
    bad = {m for m in mipro_imports(path, ROOT) if m.split(".")[1:2] in (["dataplane"],
                                                                          ["runtime"])}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_layering_checker_catches_violations(tmp_path):
    root = tmp_path / "mipro"
    files = {
        "dataplane/__init__.py": "",
        "dataplane/ha.py": "from .kernel import rtbatch\nfrom .fa.agent import X\n",
        "dataplane/fa/__init__.py": "", "dataplane/fa/agent.py": "from ..fake import F\n",
        "dataplane/kernel/__init__.py": "",
        "dataplane/kernel/rtbatch.py": "from ..relay import relay\nfrom ...core import fa\n",
        "dataplane/relay/__init__.py": "",
        "dataplane/relay/relay.py": "from ..kernel.rtbatch import R\nfrom ..mn.agent import M\n",
        "dataplane/mn/__init__.py": "", "dataplane/mn/agent.py": "",
        "dataplane/fake.py": "", "dataplane/stray.py": "",
        "dataplane/link/__init__.py": "", "dataplane/link/arp.py": "from ...runtime import d\n",
        "core/__init__.py": "", "core/fa.py": "", "runtime/__init__.py": "",
        "runtime/d.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    found = dataplane_violations(root)
    assert found == [
        "mipro.dataplane.fa.agent -> mipro.dataplane.fake: only the runtime and tests "
        "choose the fake",
        "mipro.dataplane.ha -> mipro.dataplane.fa.agent: a role never imports another role "
        "(shared code is a mechanism's)",
        "mipro.dataplane.kernel.rtbatch -> mipro.core.fa: a mechanism uses the codec (wire/) "
        "at most, not the engines",
        "mipro.dataplane.kernel.rtbatch -> mipro.dataplane.relay.relay: mechanisms do not "
        "import each other (allowed: [('link', 'kernel'), ('relay', 'kernel')])",
        "mipro.dataplane.link.arp -> mipro.runtime.d: the dataplane is below runtime/",
        "mipro.dataplane.relay.relay -> mipro.dataplane.mn.agent: a mechanism never imports "
        "a role",
        "mipro.dataplane.stray: neither a role (ha.py, fa/, mn/), a mechanism (kernel/, "
        "relay/, link/) nor fake.py: see docs/architecture.md",
    ]

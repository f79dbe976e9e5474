"""Read enough of keepalived.conf to check that it agrees with the home agent's
[redundancy] settings (`mipro check-config`): the instance of each group, its VRID,
interface, virtual address, the notify FIFO and the track file mipro writes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

_TOKEN = re.compile(r'"[^"]*"|[{}]|[^\s{}"]+')


@dataclass
class Block:
    """``keyword args... { children }`` or a plain ``keyword args...`` line."""

    keyword: str
    args: list[str] = field(default_factory=list)
    children: list[Block] = field(default_factory=list)

    def all(self, keyword: str) -> list[Block]:
        return [c for c in self.children if c.keyword == keyword]

    def first(self, keyword: str) -> Block | None:
        found = self.all(keyword)
        return found[0] if found else None

    def value(self, keyword: str) -> str | None:
        b = self.first(keyword)
        return b.args[0].strip('"') if b is not None and b.args else None


def parse(text: str) -> Block:
    """A tolerant reading: comments (# and !) dropped, one statement per line, braces
    nest (a brace may end a line or stand alone)."""
    root = Block("")
    stack = [root]
    for raw in text.splitlines():
        line = re.sub(r"\s[#!].*$|^\s*[#!].*$", "", raw)
        tokens = _TOKEN.findall(line)
        while tokens:
            if tokens[0] == "}":
                if len(stack) > 1:
                    stack.pop()
                tokens = tokens[1:]
                continue
            if "{" in tokens:
                i = tokens.index("{")
                head, tokens = tokens[:i], tokens[i + 1:]
                if head:
                    block = Block(head[0], head[1:])
                else:  # a lone brace opens a block for the previous statement
                    block = stack[-1].children.pop() if stack[-1].children else Block("")
                stack[-1].children.append(block)
                stack.append(block)
                continue
            if "}" in tokens:
                i = tokens.index("}")
                head, tokens = tokens[:i], tokens[i:]
            else:
                head, tokens = tokens, []
            if head:
                stack[-1].children.append(Block(head[0], head[1:]))
    return root


@dataclass(frozen=True)
class Want:
    """What the home agent's configuration says one group needs from keepalived."""

    key: str  # e.g. "redundancy.group.0"
    instance: str
    vrid: int
    address: IPv4Address
    interface: str
    track_file: str


def check(path: str | Path, notify_fifo: str, wants: list[Want],
          process_name: str = "mipro-ha") -> tuple[list[str], list[str]]:
    """(errors, warnings), each as ``FILE: WHERE: PROBLEM``."""
    text = Path(path).read_text()
    conf = parse(text)
    errors: list[str] = []
    warnings: list[str] = []

    def err(where: str, problem: str) -> None:
        errors.append(f"{path}: {where}: {problem}")

    fifos = [g.value(k) for g in conf.all("global_defs")
             for k in ("vrrp_notify_fifo", "notify_fifo") if g.value(k)]
    if notify_fifo not in fifos:
        err("global_defs", f"no notify_fifo (or vrrp_notify_fifo) {notify_fifo} "
                           "(redundancy.notify_fifo): mipro would never hear a state change")
    track_files = {b.args[0].strip('"'): b for b in conf.all("track_file") + conf.all(
        "vrrp_track_file") if b.args}
    instances = {b.args[0].strip('"'): b for b in conf.all("vrrp_instance") if b.args}
    processes = {b.args[0].strip('"'): b.value("process") for b in
                 conf.all("vrrp_track_process") if b.args}
    for w in wants:
        inst = instances.get(w.instance)
        where = f"vrrp_instance {w.instance}"
        if inst is None:
            err(where, f"missing (the instance of {w.key})")
            continue
        vrid = inst.value("virtual_router_id")
        if vrid != str(w.vrid):
            err(where, f"virtual_router_id {vrid} is not {w.key}.vrid {w.vrid}")
        if inst.value("interface") != w.interface:
            err(where, f"interface {inst.value('interface')} is not ha.home_interface "
                       f"{w.interface}")
        vips = {_address(b.keyword) for v in inst.all("virtual_ipaddress")
                for b in v.children}
        if w.address not in vips:
            err(where, f"virtual_ipaddress has no {w.address} ({w.key}.address)")
        tracked = [b.keyword.strip('"') for t in inst.all("track_file") for b in t.children]
        files = {name: track_files[name].value("file") for name in tracked
                 if name in track_files}
        if w.track_file not in files.values():
            err(where, f"tracks no track_file whose file is {w.track_file} "
                       f"({w.key}.track_file): a home agent that is not in sync could "
                       "take over")
        else:
            name = next(n for n, f in files.items() if f == w.track_file)
            weight = track_files[name].value("weight")
            if weight not in (None, "0"):
                err(f"track_file {name}", f"weight {weight}: mipro writes 1 for 'not in "
                                          "sync', which needs weight 0 (non-zero = FAULT)")
        watched = [processes.get(b.keyword.strip('"')) for t in inst.all("track_process")
                   for b in t.children]
        for process in watched:
            if process is not None and process.strip('"') != process_name:
                err(where, f"tracks process {process}, but mipro's process is named "
                           f"{process_name} (redundancy.process_name): if mipro died, "
                           "the address would stay")
        if not watched and not inst.all("track_script"):
            warnings.append(f"{path}: {where}: tracks neither mipro's process "
                            "(vrrp_track_process) nor a script: if mipro dies, keepalived "
                            "keeps the address")
        if inst.first("nopreempt") is None and inst.first("preempt_delay") is None:
            warnings.append(f"{path}: {where}: neither nopreempt nor preempt_delay: a "
                            "home agent coming back takes the address back at once")
        if inst.first("use_vmac") is None:
            warnings.append(f"{path}: {where}: no use_vmac: after a takeover hosts on the "
                            "home link learn the new MAC from gratuitous ARP only")
    return errors, warnings


def _address(text: str) -> IPv4Address | None:
    try:
        return IPv4Interface(text).ip
    except ValueError:
        return None

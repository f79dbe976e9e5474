"""python-iptables helpers every role uses: commit, our chains hooked in and dropped, what
an earlier run left removed, a chain's counters, the match on an ipset.

Tables are used with ``autocommit = False`` and explicit commits (never python-iptables'
``easy`` module, which swallows errors).  libiptc replaces the whole table on commit and
the kernel refuses it (EAGAIN) if anyone changed the table meanwhile, so a change starts
with ``table.refresh()`` and ends with ``commit(table)``, which re-reads it too.
"""

from __future__ import annotations

from collections.abc import Iterable

import iptc


def commit(table: iptc.Table) -> None:
    """Commit ``table`` and read it back (the next change starts from the kernel's)."""
    table.commit()
    table.refresh()


def hook_chain(table: iptc.Table, parent: str, name: str,
               rules: Iterable[iptc.Rule] = ()) -> None:
    """Create chain ``name`` if need be, append ``rules`` to it and jump to it first from
    ``parent``; committed (one commit)."""
    table.refresh()
    if not table.is_chain(name):
        table.create_chain(name)
    chain = iptc.Chain(table, name)
    for rule in rules:
        chain.append_rule(rule)
    jump = iptc.Rule()
    jump.target = iptc.Target(jump, name)
    iptc.Chain(table, parent).insert_rule(jump)
    commit(table)


def drop_chain(table: iptc.Table, parent: str, name: str) -> bool:
    """Unhook chain ``name`` from ``parent``, empty and delete it (uncommitted)."""
    if not table.is_chain(name):
        return False
    hook = iptc.Chain(table, parent)
    for rule in list(hook.rules):
        if rule.target.name == name:
            hook.delete_rule(rule)
    chain = iptc.Chain(table, name)
    chain.flush()
    chain.delete()
    return True


def remove_chains(table: iptc.Table, hooks: tuple[str, ...], names: tuple[str, ...] = (),
                  prefixes: tuple[str, ...] = ()) -> tuple[int, int]:
    """Ours, whoever left them (a start's cleanup, a stop): every jump from ``hooks`` to a
    chain called one of ``names`` or starting with one of ``prefixes``, and those chains
    (all emptied first: they may jump to each other); committed.  (jumps, chains) removed."""
    def ours(name: str) -> bool:
        return name in names or name.startswith(prefixes)

    table.refresh()
    jumps = 0
    for hook in hooks:
        chain = iptc.Chain(table, hook)
        for rule in list(chain.rules):
            if ours(rule.target.name):
                chain.delete_rule(rule)
                jumps += 1
    doomed = [c for c in table.chains if ours(c.name)]
    for chain in doomed:
        chain.flush()
    for chain in doomed:
        chain.delete()
    commit(table)
    return jumps, len(doomed)


def chain_counters(table: iptc.Table, name: str) -> list[dict[str, object]]:
    """A chain's rules with their packet counters, for `mipro status`."""
    table.refresh()
    if not table.is_chain(name):
        return []
    out: list[dict[str, object]] = []
    for rule in iptc.Chain(table, name).rules:
        packets, _ = rule.get_counters()
        out.append({"source": rule.src, "destination": rule.dst, "protocol": rule.protocol,
                    "target": rule.target.name, "packets": packets})
    return out


def set_match(rule: iptc.Rule, name: str, direction: str) -> None:
    """Match packets whose ``direction`` ("src"/"dst") address is in ipset ``name``."""
    m = rule.create_match("set")
    m.match_set = [name, direction]

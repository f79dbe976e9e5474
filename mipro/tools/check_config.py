"""`mipro check-config FILE`: validate, print every problem, exit 0 or 1."""

from __future__ import annotations

from ..config import ConfigError, HaConfig, load_role


def run(path: str) -> int:
    try:
        cfg = load_role(path)
        if isinstance(cfg, HaConfig) and cfg.ldap is not None:
            print(f"{path}: subscribers from {cfg.ldap['url']} (not contacted by check-config)")
        if isinstance(cfg, HaConfig) and cfg.subscribers_file is not None:
            from ..subscribers.file_store import load_subscribers

            store = load_subscribers(cfg.subscribers_file, f"{path}: subscribers.file")
            print(f"{cfg.subscribers_file}: ok ({len(store)} subscribers)")
        if isinstance(cfg, HaConfig) and cfg.redundancy is not None:
            check_keepalived(path, cfg)
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return 1
    print(f"{path}: ok ({cfg.role})")
    return 0


def check_keepalived(path: str, cfg: HaConfig) -> None:
    """keepalived.conf must agree with [redundancy]: instance, VRID, interface, address,
    notify FIFO, track file (errors); nopreempt and use_vmac are advised (warnings)."""
    from ..config import keepalived
    from ..config.loader import file_problem

    r = cfg.redundancy
    assert r is not None
    if (problem := file_problem(r.keepalived_conf)) is not None:
        raise ConfigError([f"{path}: redundancy.keepalived_conf: {r.keepalived_conf}: "
                           f"{problem}"])
    wants = [keepalived.Want(f"redundancy.group.{i}", g.instance, g.vrid, g.address,
                             cfg.home_interface, g.track_file)
             for i, g in enumerate(r.groups)]
    errors, warnings = keepalived.check(r.keepalived_conf, r.notify_fifo, wants,
                                        r.process_name)
    for line in warnings:
        print(f"warning: {line}")
    if errors:
        raise ConfigError(errors)
    print(f"{r.keepalived_conf}: agrees ({len(wants)} group{'s' if len(wants) > 1 else ''})")

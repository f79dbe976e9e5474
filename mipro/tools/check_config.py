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
    errors += check_pid_file(path, r.keepalived_pid_file, warnings)
    for line in warnings:
        print(f"warning: {line}")
    if errors:
        raise ConfigError(errors)
    print(f"{r.keepalived_conf}: agrees ({len(wants)} group{'s' if len(wants) > 1 else ''})")


def check_pid_file(path: str, pid_file: str | None, warnings: list[str]) -> list[str]:
    """redundancy.keepalived_pid_file: advised; if it exists now, only root (or mipro's
    user) may write it (it names the process mipro takes for keepalived)."""
    import os

    from ..runtime.redundancy import pid_file_problem

    where = f"{path}: redundancy.keepalived_pid_file"
    if pid_file is None:
        warnings.append(f"{where}: not set: a keepalived killed without a word (SIGKILL, "
                        "a crash) leaves this home agent primary until keepalived is back")
        return []
    try:
        problem = pid_file_problem(os.stat(pid_file, follow_symlinks=False))
    except FileNotFoundError:
        return []  # keepalived not running now: written when it starts
    except OSError as exc:
        problem = exc.strerror or str(exc)
    return [f"{where}: {pid_file}: {problem}"] if problem else []

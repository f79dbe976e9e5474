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
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return 1
    print(f"{path}: ok ({cfg.role})")
    return 0

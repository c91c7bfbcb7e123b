from tests.support.daemon import daemon, daemon_world

__all__ = ["daemon", "daemon_world"]

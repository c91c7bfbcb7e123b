from tests.support.daemon import daemon, daemon_world
from tests.support.nobody import nobody

__all__ = ["daemon", "daemon_world", "nobody"]

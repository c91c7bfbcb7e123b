from tests.support.daemon import daemon_world
from tests.support.nobody import open_env

__all__ = ["daemon_world", "open_env"]

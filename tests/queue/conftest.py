from tests.support.nobody import open_env

__all__ = ["open_env"]

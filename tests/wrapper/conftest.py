from tests.support.nobody import nobody, open_env

__all__ = ["nobody", "open_env"]

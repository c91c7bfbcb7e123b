"""Routers: drivers for addresses in remote domains.

The registry maps each ``driver =`` name to "module:Class"; classes are
imported only when a configuration uses them.
"""

ROUTERS: dict[str, str] = {}

"""Directors: drivers for addresses in local domains.

The registry maps each ``driver =`` name to "module:Class"; classes are
imported only when a configuration uses them.
"""

DIRECTORS: dict[str, str] = {}

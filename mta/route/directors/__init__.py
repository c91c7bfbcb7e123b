"""Directors: drivers for addresses in local domains.

The registry maps each ``driver =`` name to "module:Class"; classes are
imported only when a configuration uses them.
"""

DIRECTORS: dict[str, str] = {
    "aliasfile": "mta.route.directors.aliasfile:AliasfileDirector",
    "forwardfile": "mta.route.directors.forwardfile:ForwardfileDirector",
    "localuser": "mta.route.directors.localuser:LocaluserDirector",
    "smartuser": "mta.route.directors.smartuser:SmartuserDirector",
}

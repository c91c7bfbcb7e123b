"""Routers: drivers for addresses in remote domains.

The registry maps each ``driver =`` name to "module:Class"; classes are
imported only when a configuration uses them.
"""

ROUTERS: dict[str, str] = {
    "domainlist": "mta.route.routers.domainlist:DomainlistRouter",
    "ipliteral": "mta.route.routers.ipliteral:IpliteralRouter",
    "lookuphost": "mta.route.routers.lookuphost:LookuphostRouter",
    "queryprogram": "mta.route.routers.queryprogram:QueryprogramRouter",
}

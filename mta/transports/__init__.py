"""Transports: drivers that move a message to its destination.

The registry maps each ``driver =`` name to "module:Class"; classes are
imported only when a configuration uses them.
"""

TRANSPORTS: dict[str, str] = {
    "autoreply": "mta.transports.autoreply:AutoreplyTransport",
    "appendfile": "mta.transports.appendfile:AppendfileTransport",
    "pipe": "mta.transports.pipe:PipeTransport",
    "smtp": "mta.transports.smtp:SmtpTransport",
}

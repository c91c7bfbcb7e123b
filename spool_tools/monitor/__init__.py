"""mta-monitor: Exim's eximon as a web page served by mta (docs/monitor.md).

cli.py       the command: options, the token, binding, dropping to mta_user
auth.py      who is asking: the token, the password file, sessions and their CSRF tokens
watch.py     what the page shows: the queue, per-domain counts, the main log's tail and counts
starter.py   deliver now and give up, in a child `mta -M` / `mta -Mg` (never in the web server)
server.py    the aiohttp application: the page, server-sent events, views and actions
static/      the page itself: HTML, CSS and plain JavaScript, served from the package
"""

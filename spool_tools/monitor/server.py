"""The monitor's web application (aiohttp): the page, its live data, message views and actions.

    GET  /login, POST /login, POST /logout     the login form (token, or login and password)
    GET  /                                     the page (static/index.html)
    GET  /static/NAME                          its script and style sheet, from the package
    GET  /api/session                          who is logged in, what they may do, the CSRF token
    GET  /api/events                           server-sent events: queue, log, charts (watch.py)
    GET  /api/messages/ID/header|body|log      -Mvh, -Mvb, -Mvl (spool_tools.message_views)
    POST /api/messages/ID/ACTION               freeze, thaw, deliver, remove, giveup, addrecipient

Who may do what is the command line's rule (message_actions.refusal with
the user's is_administrator); the queue is shown only to those who may list
it (queue_list_requires_admin), the message views only to administrators
(as -Mv*).  Actions call the code of -Mf, -Mt, -Mrm and -Mar
(spool_tools.message_actions) in a thread; deliver now and give up start
`mta -M` and `mta -Mg` (starter.py).  Each action is logged in the main log
with the user's name and "(mta-monitor, ADDRESS)".

Security: every request but the login form needs a session cookie; every
POST needs the session's CSRF token in ``X-CSRF-Token`` and, when the
browser sends one, an Origin equal to the monitor's own.  Every response
forbids framing and sniffing, and the page's Content-Security-Policy allows
only the monitor's own script and style (no inline script).  Message data
reaches the page only as JSON, put into the document as text
(textContent), never as markup.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hmac
import importlib.resources

from aiohttp import web

from mta.spool.ids import is_message_id
from spool_tools.message_actions import ActionError, Actor, refusal

# typing is imported only by type checkers: at run time it costs milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from typing import Any

    from mta.config.loader import Config
    from mta.log import Logger
    from mta.spool.store import Spool
    from spool_tools.monitor.auth import Authority, Session
    from spool_tools.monitor.starter import DirectStarter, HelperStarter
    from spool_tools.monitor.watch import Watcher

COOKIE = "mta_monitor"
VIEW_MAX = 1024 * 1024  # bytes of a message file shown in the page; the rest is cut with a note
VIEWERS_MAX = 500
HEARTBEAT = 15.0
LOGIN_FAILURE_DELAY = 1.0
LOGIN_WAITING_MAX = 4  # login attempts from one address waiting their turn; more are answered 429
LOGIN_CHECKS_MAX = 64  # login attempts waiting in all; more are answered 503
PASSWORD_CHECKERS = 2  # threads for scrypt, apart from those that read the spool
CONNECTIONS_MAX = VIEWERS_MAX + 100  # connections at once; more are closed as they come
HEAD_TIMEOUT = 10.0  # seconds a new connection has to send its first request's head
KEEPALIVE_TIMEOUT = 15.0  # seconds an idle connection is kept between requests
STATIC = {"monitor.js": "text/javascript", "monitor.css": "text/css"}
VIEWS = {"header": "vh", "body": "vb", "log": "vl"}
# The page's actions and the -M option each is.
ACTIONS = {"freeze": "f", "thaw": "t", "deliver": "", "remove": "rm", "giveup": "g", "addrecipient": "ar"}
VIEW_FLAGS = "vh"  # what showing a message's files needs: any -Mv option's right
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_ADDRESS_MAX = 1000

APP: web.AppKey[Monitor] = web.AppKey("monitor")


class Monitor:
    """What the handlers share."""

    def __init__(
        self,
        config: Config,
        spool: Spool,
        logger: Logger,
        authority: Authority,
        watcher: Watcher,
        starter: DirectStarter | HelperStarter,
        tls: bool,
    ) -> None:
        self.config = config
        self.spool = spool
        self.logger = logger
        self.authority = authority
        self.watcher = watcher
        self.starter = starter
        self.tls = tls
        self.streams: set[asyncio.Task[Any]] = set()
        self.login_turns = LoginTurns()
        # Password checks (scrypt: CPU and 16 MB each) get threads of their own, so that a flood
        # of logins cannot hold up the poller's and the actions' threads.
        self.password_checkers = concurrent.futures.ThreadPoolExecutor(PASSWORD_CHECKERS, "password-check")
        self.stop: asyncio.Event | None = None  # set to stop serving (run_server makes it)
        self.guard: ConnectionGuard | None = None  # run_server's
        self.failure = ""  # why the monitor stopped by itself

    def may_list_queue(self, session: Session) -> bool:
        return session.user.admin or not self.config.main.queue_list_requires_admin

    def refusal(self, session: Session, flags: str) -> str | None:
        return refusal(flags, session.user.admin, self.config.main.prod_requires_admin)


class LoginTurns:
    """Login attempts from one address are checked one at a time, and a failed one keeps its
    turn for LOGIN_FAILURE_DELAY: an address gets at most one wrong guess a second however many
    connections it opens.  Past LOGIN_WAITING_MAX waiting from one address, or LOGIN_CHECKS_MAX
    in all, an attempt is refused at once (memory and threads stay bounded)."""

    def __init__(self) -> None:
        self.locks: dict[str, asyncio.Lock] = {}
        self.waiting: dict[str, int] = {}
        self.total = 0

    @contextlib.asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        if self.waiting.get(address, 0) >= LOGIN_WAITING_MAX:
            raise web.HTTPTooManyRequests(text="too many login attempts from your address: wait a few seconds\n")
        if self.total >= LOGIN_CHECKS_MAX:
            raise web.HTTPServiceUnavailable(text="too many login attempts: wait a few seconds\n")
        lock = self.locks.setdefault(address, asyncio.Lock())
        self.waiting[address] = self.waiting.get(address, 0) + 1
        self.total += 1
        try:
            async with lock:
                yield
        finally:
            self.total -= 1
            self.waiting[address] -= 1
            if not self.waiting[address]:
                del self.waiting[address], self.locks[address]


@functools.cache
def static_text(name: str) -> bytes:
    """A file of static/, read once (so that, after the drop to mta_user, no file of the package is opened)."""
    return importlib.resources.files("spool_tools.monitor").joinpath("static", name).read_bytes()


# -- checks on every request ----------------------------------------------------------------


class ConnectionGuard:
    """The protocol factory of the listening socket: at most CONNECTIONS_MAX connections, and
    each must start its first request within HEAD_TIMEOUT (aiohttp waits for ever for a request
    head sent a byte at a time: a slowloris client could hold every descriptor).  Between
    requests, aiohttp's keep-alive timeout closes an idle connection."""

    def __init__(self, server: web.Server) -> None:
        self.server = server
        self.open: dict[web.RequestHandler, asyncio.TimerHandle | None] = {}

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self, self.server())

    def started(self, handler: web.RequestHandler) -> None:
        """A request has come on the connection (called by the middleware)."""
        deadline = self.open.get(handler)
        if deadline is not None:
            deadline.cancel()
            self.open[handler] = None


class _Guarded(asyncio.Protocol):
    """aiohttp's handler for one connection, with the guard's count and deadline around it."""

    def __init__(self, guard: ConnectionGuard, handler: web.RequestHandler) -> None:
        self.guard = guard
        self.handler = handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.handler.connection_made(transport)
        if len(self.guard.open) >= CONNECTIONS_MAX:
            transport.close()
            return
        loop = asyncio.get_running_loop()
        self.guard.open[self.handler] = loop.call_later(HEAD_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        deadline = self.guard.open.pop(self.handler, None)
        if deadline is not None:
            deadline.cancel()
        self.handler.connection_lost(exc)


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    guard = request.app[APP].guard
    if guard is not None:
        guard.started(request.protocol)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    # Not no-referrer: with it a browser sends "Origin: null" on the page's own form posts.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    if isinstance(response, web.HTTPException):
        raise response
    return response


def _same_origin(request: web.Request) -> bool:
    """A browser names the page a request came from; it must be ours (login CSRF, cross-site POSTs)."""
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def _session(request: web.Request) -> Session | None:
    return request.app[APP].authority.session(request.cookies.get(COOKIE))


def _api_session(request: web.Request, post: bool = False) -> Session:
    """The request's session, or the HTTP error that ends it (401 without one, 403 for a POST
    without its CSRF token or from another origin)."""
    session = _session(request)
    if session is None:
        raise web.HTTPUnauthorized(text="not logged in\n")
    if post:
        offered = request.headers.get("X-CSRF-Token", "")
        if not _same_origin(request) or not hmac.compare_digest(offered.encode(), session.csrf.encode()):
            raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page\n")
    return session


def _peer(request: web.Request) -> str:
    return request.remote or "unknown"


# -- login -----------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.StreamResponse:
    if _session(request) is not None:
        raise web.HTTPFound("/")
    return web.Response(body=static_text("login.html"), content_type="text/html")


async def login(request: web.Request) -> web.StreamResponse:
    monitor = request.app[APP]
    if not _same_origin(request):
        raise web.HTTPForbidden(text="login from another site refused\n")
    if request.content_type != "application/x-www-form-urlencoded":
        # The login form's own encoding; aiohttp's multipart parser answers bad input with a 500.
        raise web.HTTPBadRequest(text="the login form is posted as application/x-www-form-urlencoded\n")
    try:
        form = await request.post()
    except ValueError:
        raise web.HTTPBadRequest(text="a damaged login form\n") from None
    token, name, password = (str(form.get(k, ""))[:_ADDRESS_MAX] for k in ("token", "login", "password"))
    async with monitor.login_turns.turn(_peer(request)):
        user = None
        if token:
            user = monitor.authority.token_user(token)
        elif name and password:
            loop = asyncio.get_running_loop()
            check = monitor.authority.password_user
            user = await loop.run_in_executor(monitor.password_checkers, check, name, password)
        if user is None:
            monitor.logger.main(f"mta-monitor: login failed from {_peer(request)}")
            await asyncio.sleep(LOGIN_FAILURE_DELAY)  # holding the address's turn
            raise web.HTTPFound("/login?failed=1")
    session = monitor.authority.open_session(user, _peer(request))
    role = "administrator" if user.admin else "read-only"
    monitor.logger.main(f"mta-monitor: {user.name} logged in from {_peer(request)} ({role})")
    response = web.HTTPFound("/")
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="Strict", secure=monitor.tls, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    session = _api_session(request, post=True)
    request.app[APP].authority.close_session(session.id)
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


# -- the page ----------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    if _session(request) is None:
        raise web.HTTPFound("/login")
    return web.Response(body=static_text("index.html"), content_type="text/html")


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=static_text(name), content_type=STATIC[name], charset="utf-8")


async def session_info(request: web.Request) -> web.StreamResponse:
    session = _api_session(request)
    monitor = request.app[APP]
    allowed = [action for action, flags in ACTIONS.items() if monitor.refusal(session, flags) is None]
    return web.json_response(
        {
            "user": session.user.name,
            "admin": session.user.admin,
            "actions": allowed,
            "views": monitor.refusal(session, VIEW_FLAGS) is None,
            "queue": monitor.may_list_queue(session),
            "csrf": session.csrf,
            "host": monitor.config.main.primary_hostname or "",
        }
    )


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events until the client goes, the session ends, or the server stops."""
    session = _api_session(request)
    monitor = request.app[APP]
    if len(monitor.watcher.viewers) >= VIEWERS_MAX:
        raise web.HTTPServiceUnavailable(text="too many viewers\n")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    viewer = monitor.watcher.subscribe(monitor.may_list_queue(session))
    task = asyncio.current_task()
    if task is not None:
        monitor.streams.add(task)
    try:
        await response.write(b"retry: 2000\n\n")
        while monitor.authority.session(session.id) is not None:
            try:
                event = await asyncio.wait_for(viewer.queue.get(), HEARTBEAT)
            except TimeoutError:
                event = b": keep-alive\n\n"
            if event is None:
                break  # too slow to keep up, or the server is stopping: the browser reconnects
            await response.write(event)
    except ConnectionResetError:
        pass  # the client went away mid-stream
    finally:
        monitor.watcher.unsubscribe(viewer)
        if task is not None:
            monitor.streams.discard(task)
    return response


# -- one message -------------------------------------------------------------------------------


def _message_id(request: web.Request) -> str:
    message_id = request.match_info["id"]
    if not is_message_id(message_id):
        raise web.HTTPNotFound(text="not a message id\n")
    return message_id


async def view(request: web.Request) -> web.StreamResponse:
    session = _api_session(request)
    monitor = request.app[APP]
    message_id = _message_id(request)
    which = VIEWS.get(request.match_info["view"])
    if which is None:
        raise web.HTTPNotFound()
    problem = monitor.refusal(session, which)
    if problem:
        raise web.HTTPForbidden(text=problem + "\n")
    try:
        text = await asyncio.to_thread(_read_view, monitor, message_id, which)
    except ActionError as exc:
        raise web.HTTPNotFound(text=f"{exc}\n") from None
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def _read_view(monitor: Monitor, message_id: str, which: str) -> str:
    from spool_tools.message_views import view as view_chunks

    data = bytearray()
    chunks = view_chunks(monitor.spool, message_id, which, message_logs=monitor.config.main.message_logs)
    for chunk in chunks:
        data += chunk
        if len(data) > VIEW_MAX:
            cut = f"\n[... cut at {VIEW_MAX} bytes: mta -M{which} shows it all]\n"
            return data[:VIEW_MAX].decode("utf-8", "replace") + cut
    return data.decode("utf-8", "replace")


async def action(request: web.Request) -> web.StreamResponse:
    session = _api_session(request, post=True)
    monitor = request.app[APP]
    message_id = _message_id(request)
    name = request.match_info["action"]
    flags = ACTIONS.get(name)
    if flags is None:
        raise web.HTTPNotFound(text="no such action\n")
    problem = monitor.refusal(session, flags)
    if problem:
        raise web.HTTPForbidden(text=problem + "\n")
    via = f"mta-monitor, {_peer(request)}"
    if flags in ("", "g"):
        # A delivery never runs here: `mta -M` / `mta -Mg` do it (starter.py).  Their own lines
        # name the process's user, so this one says for whom.
        asked = "delivery" if flags == "" else "giving up"
        monitor.logger.main(f"{asked} requested by {session.user.name} ({via})", message_id)
        status, output = await monitor.starter.run(flags, message_id)
        monitor.watcher.wake()
        done = {"": f"Delivery of {message_id} was tried", "g": f"Message {message_id} was given up"}[flags]
        return web.json_response(
            {"ok": status == 0, "text": output.strip() or done}, status=200 if status == 0 else 409
        )
    addresses: list[str] = []
    if flags == "ar":
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:  # not JSON, or not UTF-8: the client's mistake, not a 500
            raise web.HTTPBadRequest(text='the body must be JSON: {"address": "..."}\n') from None
        address = body.get("address") if isinstance(body, dict) else None
        if not isinstance(address, str):
            raise web.HTTPBadRequest(text="give one address to add, as a string\n")
        address = address.strip()
        if not address or len(address) > _ADDRESS_MAX or not address.isprintable():
            raise web.HTTPBadRequest(text="give one address to add\n")
        addresses = [address]
    actor = Actor(
        monitor.spool,
        monitor.logger,
        session.user.caller,
        session.user.admin,
        message_logs=monitor.config.main.message_logs,
        preserve_message_logs=monitor.config.main.preserve_message_logs,
        via=via,
    )
    try:
        text = await asyncio.to_thread(_act, actor, flags, message_id, addresses)
    except ActionError as exc:
        return web.json_response({"ok": False, "text": str(exc)}, status=409)
    finally:
        monitor.watcher.wake()
    return web.json_response({"ok": True, "text": text})


def _act(actor: Actor, flags: str, message_id: str, addresses: list[str]) -> str:
    from spool_tools import message_actions as actions

    run: dict[str, Callable[[], str]] = {
        "f": lambda: actions.freeze(actor, message_id),
        "t": lambda: actions.thaw(actor, message_id),
        "rm": lambda: actions.remove(actor, message_id),
        "ar": lambda: actions.add_recipients(actor, message_id, addresses),
    }
    return run[flags]()


def _watcher_ended(monitor: Monitor, task: asyncio.Task[None]) -> None:
    """The poller never ends by itself: if it failed, the page would go stale without a word, so
    the failure goes to the panic log and the monitor stops (its exit status says so too)."""
    if task.cancelled() or task.exception() is None:
        return
    error = task.exception()
    monitor.failure = f"internal error: the monitor's poller failed: {type(error).__name__}: {error}"
    monitor.logger.panic(f"mta-monitor: {monitor.failure}")
    if monitor.stop is not None:
        monitor.stop.set()


# -- the application ---------------------------------------------------------------------------


def make_app(monitor: Monitor) -> web.Application:
    app = web.Application(middlewares=[security_headers], client_max_size=64 * 1024)
    app[APP] = monitor
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/session", session_info)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/messages/{id}/{view}", view)
    app.router.add_post("/api/messages/{id}/{action}", action)

    async def watching(app: web.Application) -> Any:
        task = asyncio.create_task(monitor.watcher.run())
        task.add_done_callback(lambda done: _watcher_ended(monitor, done))
        yield
        task.cancel()
        monitor.watcher.close()
        monitor.password_checkers.shutdown(wait=False, cancel_futures=True)

    async def shutdown(app: web.Application) -> None:
        monitor.watcher.close()  # each event stream ends at its next look at its queue

    app.cleanup_ctx.append(watching)
    app.on_shutdown.append(shutdown)
    return app

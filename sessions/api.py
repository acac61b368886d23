"""The session API under /api/sessions in `reservoir serve`, and the supervisor that keeps rows and engines in step.

Every route needs a site account (password or token, checked by the site's
Authenticator: in its thread pool, failures limited per address). A user sees
only their own sessions; another user's session answers 404 exactly as a
missing one does. Admins see all.

Blocking work (database, engine) runs in threads. One worker per server
holds the supervisor lock (<home>/sessions/supervisor.lock) and runs the
supervisor: reconcile on start, engine events, a tick every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from reservoir.errors import ReservoirError
from restorer.auth import Account, AccountStore, TooManyFailures
from sessions.resources import parse_request

log = logging.getLogger("reservoir.sessions.api")
SERVICE_KEY = web.AppKey("sessions", object)
TICK_S = 2.0


def _error(status: int, message: str, hint: str | None = None) -> web.Response:
    return web.json_response({"error": message, "hint": hint}, status=status)


def _service(request: web.Request) -> Any:
    return request.app[SERVICE_KEY]


async def _account(request: web.Request, state: Any) -> Account | web.Response:
    try:
        account = await state.authenticator.verify(request.headers.get("Authorization"), request.remote or "-")
    except TooManyFailures as exc:
        return _error(429, f"too many failed logins from this address: retry after {exc.retry_after_s} s")
    if account is None:
        return _error(401, "not logged in to this site", "run `reservoir login`, or set RESERVOIR_TOKEN")
    return account


Handler = Callable[[web.Request, Account], Awaitable[web.StreamResponse]]


def _authenticated(state: Any, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def guarded(request: web.Request) -> web.StreamResponse:
        who = await _account(request, state)
        if isinstance(who, web.Response):
            return who
        try:
            return await handler(request, who)
        except ReservoirError as exc:
            from sessions.service import NotFound

            return _error(404 if isinstance(exc, NotFound) else 400, exc.message, exc.hint)

    return guarded


async def _blocking(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, lambda: function(*args, **kwargs))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ReservoirError("the request body is not JSON", hint="use the reservoir CLI") from None
    if not isinstance(body, dict):
        raise ReservoirError("the request body must be a JSON object", hint="use the reservoir CLI")
    return body


def _credentials(header: str) -> tuple[str, str]:
    """The caller's own credential, for the mirror inside their session (username, secret)."""
    import base64
    import binascii

    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return "__token__", value.strip()
    try:
        user, _, secret = base64.b64decode(value.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return user, secret


def register(app: web.Application, state: Any) -> None:
    """Add /api/sessions, /api/login and /metrics, and the supervisor, to the site's application."""
    context = state.app_context
    if context is None:
        return
    app[SERVICE_KEY] = None
    auth_mode = state.authenticator.mode

    async def login(request: web.Request, account: Account) -> web.StreamResponse:
        if request.headers.get("Authorization", "").lower().startswith("bearer"):
            return _error(400, "log in with your password, not a token", "run `reservoir login` and type your password")
        token = await _blocking(AccountStore(context.home.keys_dir).new_token, account.name, admin=False)
        return web.json_response({"user": account.name, "token": token})

    async def list_sessions(request: web.Request, account: Account) -> web.StreamResponse:
        views = await _blocking(_service(request).list, account.name, account.admin)
        return web.json_response([asdict(v) for v in views])

    async def create(request: web.Request, account: Account) -> web.StreamResponse:
        body = await _body(request)
        task = parse_request(list(body.get("resources") or []))
        service = _service(request)
        username, secret = ("", "") if auth_mode == "none" else _credentials(request.headers.get("Authorization", ""))
        mirror = await _blocking(service.mirror_for, f"{request.scheme}://{request.host}", username, secret)
        view = await _blocking(
            service.create, account.name, str(body.get("image") or ""), task,
            name=str(body.get("name") or ""), kind=str(body.get("type") or "interactive"),
            command=[str(c) for c in body.get("command") or []], mirror=mirror,
        )
        return web.json_response(asdict(view), status=201)

    async def info(request: web.Request, account: Account) -> web.StreamResponse:
        service = _service(request)
        session_id = await _blocking(service.resolve, account.name, account.admin, request.match_info["ref"])
        return web.json_response(asdict(await _blocking(service.view_by_id, session_id)))

    async def remove(request: web.Request, account: Account) -> web.StreamResponse:
        view = await _blocking(_service(request).remove, account.name, account.admin, request.match_info["ref"])
        return web.json_response(asdict(view))

    async def execute(request: web.Request, account: Account) -> web.StreamResponse:
        body = await _body(request)
        command = [str(c) for c in body.get("command") or []]
        if not command:
            return _error(400, "no command to run", "put it after --: session exec ID -- CMD")
        result = await _blocking(_service(request).exec, account.name, account.admin, request.match_info["ref"], command)
        return web.json_response({"exit_code": result.exit_code, "output": result.output.decode(errors="replace")})

    async def logs(request: web.Request, account: Account) -> web.StreamResponse:
        follow = request.query.get("follow") in ("1", "true")
        tail = int(request.query["tail"]) if request.query.get("tail", "").isdigit() else None
        chunks = await _blocking(_service(request).logs, account.name, account.admin, request.match_info["ref"], follow, tail)
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)
        loop = asyncio.get_running_loop()

        def pump() -> None:
            try:
                for chunk in chunks:
                    asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
            finally:
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        reader = loop.run_in_executor(None, pump)
        try:
            while (chunk := await queue.get()) is not None:
                await response.write(chunk)
        finally:
            if not reader.done():
                close = getattr(chunks, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        close()
        await response.write_eof()
        return response

    async def shell(request: web.Request, account: Account) -> web.StreamResponse:
        from sessions.shell import bridge

        return await bridge(request, _service(request), account)

    async def metrics(request: web.Request) -> web.StreamResponse:
        from sessions.metrics import render

        if _service(request) is None:
            return _error(503, "sessions are not available on this server")
        text = await _blocking(render, context.db)
        return web.Response(text=text, content_type="text/plain", charset="utf-8", headers={"X-Content-Type": "version=0.0.4"})

    def guarded(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def available(request: web.Request, account: Account) -> web.StreamResponse:
            if _service(request) is None:
                return _error(503, "sessions are not available on this server", "see the server's log")
            return await handler(request, account)

        return _authenticated(state, available)

    app.router.add_post("/api/login", _authenticated(state, login))
    app.router.add_get("/api/sessions", guarded(list_sessions))
    app.router.add_post("/api/sessions", guarded(create))
    app.router.add_get("/api/sessions/{ref}", guarded(info))
    app.router.add_delete("/api/sessions/{ref}", guarded(remove))
    app.router.add_post("/api/sessions/{ref}/exec", guarded(execute))
    app.router.add_get("/api/sessions/{ref}/logs", guarded(logs))
    app.router.add_get("/api/sessions/{ref}/shell", guarded(shell))
    app.router.add_get("/metrics", metrics)
    app.cleanup_ctx.append(lambda a: _lifetime(a, context))


async def _lifetime(app: web.Application, context: Any) -> Any:
    """Build the service when the worker starts; the supervisor runs in whichever worker holds the lock."""
    from sessions.cli import scheduler_config
    from sessions.docker_backend import DockerBackend
    from sessions.service import SessionService, sessions_config

    stop = threading.Event()
    try:
        config = sessions_config(context, scheduler_config(context))
        service = SessionService(context, config, lambda url: DockerBackend(url))
    except ReservoirError as exc:
        log.error("sessions are off: %s", exc)
        yield
        return
    app[SERVICE_KEY] = service
    thread = threading.Thread(target=_supervise, args=(service, config.state_dir, stop), name="reservoir-sessions", daemon=True)
    thread.start()
    yield
    stop.set()


def _supervise(service: Any, state_dir: Path, stop: threading.Event) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "supervisor.lock", "w") as lock:
        while not stop.is_set():
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                stop.wait(5.0)  # another worker supervises; take over if it dies
        if stop.is_set():
            return
        try:
            service.sync_nodes()
        except ReservoirError as exc:
            log.error("sessions: %s", exc)
        watched: set[str] = set()
        while not stop.is_set():
            for node in service.node_names():
                if node not in watched:
                    watched.add(node)
                    threading.Thread(target=_watch, args=(service, node, stop, watched), daemon=True).start()
            try:
                service.tick()
            except Exception:  # noqa: BLE001 - the supervisor must outlive any one bad pass
                log.exception("session supervisor pass failed")
            stop.wait(TICK_S)


def _watch(service: Any, node: str, stop: threading.Event, watched: set[str]) -> None:
    """Engine events of one node; on a broken stream the tick's reconcile covers the gap and the next tick re-watches."""
    from sessions.docker_backend import DockerBackend

    backend = DockerBackend(service.engine_of(node))  # its own connection: the event stream blocks it
    try:
        for event in backend.events(service.config.site_id):
            if stop.is_set():
                return
            try:
                service.on_event(event)
            except Exception:  # noqa: BLE001
                log.exception("session event %s failed", event)
    except Exception as exc:  # noqa: BLE001
        log.warning("events of node %s stopped: %s", node, exc)
    finally:
        watched.discard(node)
        backend.close()

"""`session shell`: a terminal in the session over a WebSocket.

Binary frames carry the terminal's bytes both ways; a text frame from the
client is a JSON resize ({"rows": R, "cols": C}); the server's last text frame
is {"exit": CODE}. The server end is an engine exec with a TTY, as the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import threading
from typing import Any

from aiohttp import ClientSession, WSMsgType, web

from reservoir.errors import ReservoirError

SHELL = ["/bin/sh", "-c", "command -v bash >/dev/null && exec bash -l || exec sh -l"]


async def bridge(request: web.Request, service: Any, account: Any) -> web.StreamResponse:
    loop = asyncio.get_running_loop()

    def open_exec() -> tuple[Any, str, Any]:
        session_id = service.resolve(account.name, account.admin, request.match_info["ref"])
        backend, container_id, as_user = service.container_of(session_id)
        exec_id, sock = backend.exec_socket(container_id, SHELL, as_user, {"TERM": request.query.get("term", "xterm")})
        return backend, exec_id, sock

    backend, exec_id, sock = await loop.run_in_executor(None, open_exec)
    raw = getattr(sock, "_sock", sock)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    done = asyncio.Event()

    def pump() -> None:
        try:
            while chunk := raw.recv(65536):
                asyncio.run_coroutine_threadsafe(ws.send_bytes(chunk), loop).result()
        except OSError:
            pass
        finally:
            loop.call_soon_threadsafe(done.set)

    threading.Thread(target=pump, daemon=True).start()
    receiver = asyncio.ensure_future(_client_frames(ws, raw, backend, exec_id))
    await done.wait()
    receiver.cancel()
    code = await loop.run_in_executor(None, lambda: backend.client.api.exec_inspect(exec_id).get("ExitCode"))
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_str(json.dumps({"exit": code if code is not None else 1}))
    await ws.close()
    with contextlib.suppress(OSError):
        raw.close()
    return ws


async def _client_frames(ws: web.WebSocketResponse, raw: Any, backend: Any, exec_id: str) -> None:
    loop = asyncio.get_running_loop()
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            await loop.run_in_executor(None, raw.sendall, message.data)
        elif message.type == WSMsgType.TEXT:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                size = json.loads(message.data)
                await loop.run_in_executor(None, backend.exec_resize, exec_id, int(size["rows"]), int(size["cols"]))


def run_terminal(url: str, authorization: str, path: str) -> int:
    """Connect the local terminal to the session's shell; returns the shell's exit code."""
    return asyncio.run(_terminal(url, authorization, path))


async def _terminal(url: str, authorization: str, path: str) -> int:
    import termios
    import tty

    interactive = sys.stdin.isatty()
    saved = termios.tcgetattr(sys.stdin.fileno()) if interactive else None
    loop = asyncio.get_running_loop()
    code = 1
    async with ClientSession(headers={"Authorization": authorization}) as http:
        try:
            ws = await http.ws_connect(url + path + f"?term={os.environ.get('TERM', 'xterm')}")
        except Exception as exc:  # noqa: BLE001 - any refusal is one line for the user
            status = getattr(exc, "status", None)
            if status == 404:
                raise ReservoirError(f"no session {path.split('/')[3]} of yours", hint="see `reservoir session ls`") from None
            raise ReservoirError(f"cannot open a shell: {exc}", hint="is the session running? `reservoir session info ID`") from None
        if interactive:
            tty.setraw(sys.stdin.fileno())
            size = shutil.get_terminal_size()
            await ws.send_str(json.dumps({"rows": size.lines, "cols": size.columns}))
        stdin = sys.stdin.fileno()

        def on_input() -> None:
            data = os.read(stdin, 65536)
            if data:
                asyncio.ensure_future(ws.send_bytes(data))
            else:
                loop.remove_reader(stdin)

        loop.add_reader(stdin, on_input)
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    sys.stdout.buffer.write(message.data)
                    sys.stdout.buffer.flush()
                elif message.type == WSMsgType.TEXT:
                    code = int(json.loads(message.data).get("exit", 1))
        finally:
            loop.remove_reader(stdin)
            if saved is not None:
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
    return code

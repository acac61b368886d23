"""Logins under attack: one scrypt run per attempt whoever the user, off the event loop, never on the fast path,
and a limit on failed attempts per client address.

The server runs in this process (its event loop in a thread, on 127.0.0.1) so that the password hash can be
counted and held: what is asserted is which code ran, never how long it took.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from aiohttp import web

import restorer.auth as auth
from reservoir.context import AppContext
from restorer.auth import AccountStore, AuthMode, FailedLogins
from restorer.fastpath import FastPath, IndexAnswers
from restorer.publish import publish_site
from restorer.server import SiteState, build_app, site_state


@dataclass
class Served:
    state: SiteState
    port: int

    def get(
        self, path: str, headers: dict[str, str] | None = None, source: str = "127.0.0.1", timeout: float = 30
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout, source_address=(source, 0))
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


@contextmanager
def serving(site: AppContext, mode: AuthMode) -> Iterator[Served]:
    """One worker as `reservoir serve` runs it (fast path first, aiohttp behind), on a loop in a thread."""
    publish_site(site)
    state = site_state(site, mode)
    app = build_app(state, mode)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, FastPath, asyncio.AbstractServer]:
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        assert runner.server is not None
        fast_path = FastPath(IndexAnswers(state, mode), runner.server)
        server = await asyncio.get_running_loop().create_server(fast_path.protocol, "127.0.0.1", 0)
        return runner, fast_path, server

    runner, fast_path, server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)

    async def stop() -> None:
        server.close()
        fast_path.close_all()
        await runner.cleanup()

    try:
        yield Served(state, server.sockets[0].getsockname()[1])
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def accounts(site: AppContext) -> AccountStore:
    store = AccountStore(site.home.keys_dir)
    store.set_password("alice", "alice password", admin=False)
    store.set_password("root", "root password", admin=True)
    store.new_token("ci-bot", admin=False)  # an account with no password
    return store


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every scrypt run from now on, by salt (patched after the fixtures' accounts were hashed)."""
    calls: list[bytes] = []
    real = auth._scrypt
    lock = threading.Lock()

    def counted(password: str, salt: bytes) -> bytes:
        with lock:
            calls.append(salt)
        return real(password, salt)

    monkeypatch.setattr(auth, "_scrypt", counted)
    return calls


@pytest.mark.usefixtures("accounts")
@pytest.mark.parametrize("user", ["alice", "nobody", "ci-bot"])
def test_a_failed_login_costs_one_scrypt_run_whether_or_not_the_user_exists(
    site: AppContext, scrypt_calls: list[bytes], user: str
) -> None:
    with serving(site, "basic") as served:
        # The index: the fast path hands the unverified credentials to aiohttp, which checks them once.
        assert served.get("/pypi/simple/", basic(user, "wrong password"))[0] == 401
        assert len(scrypt_calls) == 1
        # The admin pages, which check credentials whatever [server] auth says.
        scrypt_calls.clear()
        assert served.get("/admin/", basic(user, "wrong password"))[0] == 401
        assert len(scrypt_calls) == 1


@pytest.mark.usefixtures("accounts")
def test_the_index_is_answered_while_passwords_are_being_hashed(
    site: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = auth._scrypt
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    def held(password: str, salt: bytes) -> bytes:
        entered.set()
        release.wait(15)  # bounded: on the event loop, this would stall the worker until then
        finished.set()
        return real(password, salt)

    monkeypatch.setattr(auth, "_scrypt", held)
    with serving(site, "none") as served:
        outcome: list[int] = []
        login = threading.Thread(target=lambda: outcome.append(served.get("/admin/", basic("root", "wrong guess"))[0]))
        login.start()
        try:
            assert entered.wait(15), "the admin login never reached the password check"
            assert served.get("/pypi/simple/")[0] == 200  # the fast path
            assert served.get("/healthz")[0] == 200  # aiohttp
            assert not finished.is_set(), "anonymous requests waited for a password check"
        finally:
            release.set()
            login.join(30)
        assert outcome == [401]


@pytest.mark.usefixtures("accounts")
def test_the_fast_path_never_hashes_a_password(site: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    real = auth._scrypt
    threads: list[str] = []

    def recorded(password: str, salt: bytes) -> bytes:
        threads.append(threading.current_thread().name)
        return real(password, salt)

    monkeypatch.setattr(auth, "_scrypt", recorded)
    with serving(site, "basic") as served:
        assert served.get("/pypi/simple/", basic("alice", "alice password"))[0] == 200
        assert served.get("/pypi/simple/", basic("alice", "wrong password"))[0] == 401
        # Each checked once, and not on the event loop, where the fast path runs.
        assert len(threads) == 2 and all(name.startswith("reservoir-login") for name in threads), threads
        for _ in range(3):  # verified credentials: answered from the cache, nothing hashed
            assert served.get("/pypi/simple/", basic("alice", "alice password"))[0] == 200
        assert len(threads) == 2


@pytest.mark.usefixtures("accounts")
def test_failed_logins_are_limited_per_client_address(site: AppContext, scrypt_calls: list[bytes]) -> None:
    with serving(site, "basic") as served:
        served.state.authenticator.failures = FailedLogins(burst=3, refill_s=3600)
        for _ in range(3):
            assert served.get("/pypi/simple/", basic("alice", "wrong password"))[0] == 401
        status, headers, _ = served.get("/pypi/simple/", basic("alice", "wrong password"))
        assert status == 429 and int(headers["retry-after"]) > 0
        # Spent: even the right password is not checked from this address, on the index or the admin pages.
        assert served.get("/pypi/simple/", basic("alice", "alice password"))[0] == 429
        assert served.get("/admin/", basic("root", "root password"))[0] == 429
        assert len(scrypt_calls) == 3
        assert served.get("/healthz")[0] == 200  # no credentials, nothing to limit
        # Another address has its own attempts.
        assert served.get("/pypi/simple/", basic("alice", "alice password"), source="127.0.0.2")[0] == 200


def test_a_token_bucket_refills_and_successes_do_not_count() -> None:
    bucket = FailedLogins(burst=2, refill_s=10)
    assert bucket.take("a", 0.0) == 0 and bucket.take("a", 0.0) == 0
    assert bucket.take("a", 0.0) == pytest.approx(10)  # spent: one attempt back in 10 s
    assert bucket.take("a", 5.0) == pytest.approx(5)
    assert bucket.take("b", 5.0) == 0  # per address
    assert bucket.take("a", 10.0) == 0
    bucket.give_back("a", 10.0)  # that attempt succeeded
    assert bucket.take("a", 10.0) == 0
    assert bucket.take("a", 10.0) > 0


def test_tracking_many_addresses_stays_bounded() -> None:
    bucket = FailedLogins(burst=2, refill_s=10, max_clients=100)
    for i in range(1000):
        bucket.take(f"10.0.{i // 256}.{i % 256}", float(i))
        assert len(bucket._buckets) <= 100


def test_a_token_still_works_as_a_known_users_password(accounts: AccountStore) -> None:
    token = accounts.new_token("alice", admin=False)
    loaded = accounts.load()
    dummy = auth.dummy_scrypt_hash()
    assert auth.check_header(f"Bearer {token}", loaded, "basic", dummy) == loaded["alice"]
    assert auth.check_header(basic("alice", token)["Authorization"], loaded, "basic", dummy) == loaded["alice"]
    assert auth.check_header(basic("__token__", token)["Authorization"], loaded, "token", dummy) == loaded["alice"]
    assert auth.check_header(basic("nobody", token)["Authorization"], loaded, "basic", dummy) is None
    assert auth.check_header(basic("alice", "alice password")["Authorization"], loaded, "basic", dummy) == loaded["alice"]
    assert auth.check_header(basic("alice", "alice password")["Authorization"], loaded, "token", dummy) is None

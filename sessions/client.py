"""The CLI's side of the session API: RESERVOIR_URL and RESERVOIR_TOKEN, or what `reservoir login` saved."""

from __future__ import annotations

import base64
import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reservoir.errors import ReservoirError

URL_ENV = "RESERVOIR_URL"
TOKEN_ENV = "RESERVOIR_TOKEN"


def credentials_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "reservoir" / "credentials.json"


def save_login(url: str, token: str) -> Path:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    saved[url.rstrip("/")] = token
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(saved, f)
    os.replace(path.with_suffix(".tmp"), path)
    return path


def site_url(explicit: str | None = None) -> str:
    url = explicit or os.environ.get(URL_ENV)
    if not url:
        raise ReservoirError(f"which site? {URL_ENV} is not set", hint=f"export {URL_ENV}=http://site:8080")
    return url.rstrip("/")


@dataclass(frozen=True)
class Client:
    url: str
    authorization: str

    @classmethod
    def from_env(cls) -> Client:
        url = site_url()
        token = os.environ.get(TOKEN_ENV)
        if not token:
            try:
                token = json.loads(credentials_path().read_text()).get(url)
            except (OSError, ValueError):
                token = None
        if not token:
            raise ReservoirError(f"not logged in to {url}", hint=f"run `reservoir login` or set {TOKEN_ENV}")
        return cls(url, f"Bearer {token}")

    @classmethod
    def with_password(cls, url: str, user: str, password: str) -> Client:
        return cls(url, "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())

    def _open(self, method: str, path: str, body: Any = None, timeout: float = 600) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", self.authorization)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - the site's own URL
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except urllib.error.URLError as exc:
            raise ReservoirError(f"cannot reach {self.url}: {exc.reason}", hint=f"check {URL_ENV} and that `reservoir serve` runs") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ReservoirError(f"{self.url} broke off the answer: {exc}", hint="try again; see the server's log if it persists") from None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        with self._open(method, path, body) as response:
            return json.loads(response.read())

    def stream(self, path: str) -> Iterator[bytes]:
        with self._open("GET", path, timeout=3600) as response:
            while chunk := response.read1(65536) if hasattr(response, "read1") else response.read(65536):
                yield chunk


def _api_error(exc: urllib.error.HTTPError) -> ReservoirError:
    try:
        payload = json.loads(exc.read())
        return ReservoirError(str(payload.get("error")), hint=payload.get("hint"))
    except (ValueError, AttributeError):
        return ReservoirError(f"the site answered {exc.code} {exc.reason}", hint="see the server's log")

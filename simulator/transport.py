"""How the runner talks to the service: the public Rank/Reward/Status JSON API and nothing else.

Catalog items and interactions (generator mode) go through ``post``.
``InProcess`` builds the real Flask app on a private SQLite file with the inline learner and
a simulated clock (fast, deterministic). Rank and Reward, the hot path, skip only WSGI: the
body is encoded to JSON bytes and handed to the same body decoder and the same service
operations the HTTP endpoints call, and the answer is decoded from JSON as a client would;
every other call goes through Flask's test client. ``Http`` sends the same JSON to a running
``personalize serve``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import orjson
import requests

__all__ = ["Transport", "TransportError", "InProcess", "Http", "SimClock", "PREFIX"]

PREFIX = "/personalizer/v1.0"


class TransportError(RuntimeError):
    """The service answered a call with an error status."""


class Transport(Protocol):
    def rank(self, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def reward(self, event_id: str, value: float) -> None: ...

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class SimClock:
    """Simulated UNIX time, advanced by the runner, so reward wait times follow events, not wall time."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


def _check(status: int, body: Any, what: str) -> None:
    if status >= 400:
        raise TransportError(f"{what} failed with HTTP {status}: {body}")


class InProcess:
    """The service in this process: ``create_app`` with the inline learner on ``folder/service.db``."""

    def __init__(self, folder: Path, overrides: Mapping[str, Any], clock: Callable[[], float]):
        from personalize.app import create_app
        from personalize.config import load_settings

        folder.mkdir(parents=True, exist_ok=True)
        database = folder / "service.db"
        database.unlink(missing_ok=True)
        settings = load_settings(
            {"database_url": f"sqlite:///{database}", "learner": "inline", "reward_wait_time": 3600.0,
             **overrides},
            env={},
        )
        self.app = create_app(settings, clock=clock)
        self.client = self.app.test_client()
        self.service = self.app.extensions["personalize"]
        self._max_body = settings.max_body_bytes

    def _body(self, body: Mapping[str, Any], what: str) -> Any:
        """The body as the endpoint would read it: JSON bytes, size limit, the same strict decoder."""
        from personalize.api._common import decode_body

        raw = orjson.dumps(body)
        if len(raw) > self._max_body:
            raise TransportError(f"{what} failed with HTTP 413: body of {len(raw)} bytes > max_body_bytes {self._max_body}")
        return decode_body(raw)

    def rank(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /rank without WSGI: the endpoint's decoder and ``Service.rank``; the answer as JSON."""
        from personalize.api.errors import ApiError

        try:
            answer = self.service.rank(self._body(body, "rank"))
        except ApiError as exc:
            raise TransportError(f"rank failed with HTTP {exc.status}: {exc.body()}") from None
        return orjson.loads(orjson.dumps(answer))

    def reward(self, event_id: str, value: float) -> None:
        """POST /events/{eventId}/reward without WSGI: the endpoint's decoder and ``Service.reward``."""
        from personalize.api.errors import ApiError

        try:
            self.service.reward(event_id, self._body({"value": value}, "reward"))
        except ApiError as exc:
            raise TransportError(f"reward failed with HTTP {exc.status}: {exc.body()}") from None

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Any other JSON call under the API prefix (catalog items, interactions)."""
        response = self.client.post(f"{PREFIX}{path}", json=body)
        _check(response.status_code, response.get_json(silent=True), path)
        return response.get_json()

    def status(self) -> dict[str, Any]:
        response = self.client.get(f"{PREFIX}/status")
        _check(response.status_code, response.get_json(silent=True), "status")
        return response.get_json()

    def close(self) -> None:
        self.app.extensions["personalize"].close()


class Http:
    """A live server at ``url`` (for example ``http://127.0.0.1:5000``)."""

    def __init__(self, url: str, timeout: float = 30.0, key: str | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if key:  # a server with API keys: the catalog loading needs an admin key
            self.session.headers["Ocp-Apim-Subscription-Key"] = key

    def rank(self, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self.session.post(f"{self.url}{PREFIX}/rank", json=body, timeout=self.timeout)
        _check(response.status_code, response.text, "rank")
        return response.json()

    def reward(self, event_id: str, value: float) -> None:
        response = self.session.post(f"{self.url}{PREFIX}/events/{event_id}/reward", json={"value": value},
                                     timeout=self.timeout)
        _check(response.status_code, response.text, "reward")

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        response = self.session.post(f"{self.url}{PREFIX}{path}", json=body, timeout=self.timeout)
        _check(response.status_code, response.text, path)
        return response.json()

    def status(self) -> dict[str, Any]:
        response = self.session.get(f"{self.url}{PREFIX}/status", timeout=self.timeout)
        _check(response.status_code, response.text, "status")
        return response.json()

    def close(self) -> None:
        self.session.close()

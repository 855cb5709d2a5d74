"""gunicorn, embedded: `personalize serve` runs the app under a production WSGI server."""

from __future__ import annotations

from typing import Any, Callable

from gunicorn.app.base import BaseApplication

__all__ = ["run_server"]


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any], app_factory: Callable[[], Any]) -> None:
        self.options = options
        self.app_factory = app_factory
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in each worker after the fork: every worker builds its own Service.
        return self.app_factory()


def _worker_exit(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    service = getattr(app, "extensions", {}).get("personalize") if app is not None else None
    if service is not None:
        service.close()


def _default_app() -> Any:
    from personalize.app import create_app

    return create_app()


def run_server(host: str, port: int, workers: int, threads: int, app_factory: Callable[[], Any] = _default_app) -> None:
    _Server({
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 15,
        "accesslog": None,
        "worker_exit": _worker_exit,
    }, app_factory).run()

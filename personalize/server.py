"""gunicorn, embedded: `personalize serve` runs the app under a production WSGI server."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

__all__ = ["run_server"]


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in each worker after the fork: every worker builds its own Service.
        from personalize.app import create_app

        return create_app()


def _worker_exit(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    service = getattr(app, "extensions", {}).get("personalize") if app is not None else None
    if service is not None:
        service.close()


def run_server(host: str, port: int, workers: int, threads: int) -> None:
    _Server({
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 15,
        "accesslog": None,
        "worker_exit": _worker_exit,
    }).run()

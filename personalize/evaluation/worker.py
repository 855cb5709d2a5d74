"""The worker process of a background job: ``python -m personalize.evaluation.worker`` with
``{"settings": {...}, "kind": ..., "id": ..., "owner": ...}`` on stdin (never on the command line:
settings hold keys). Runs at a lower CPU priority than the server (jobs.WORKER_NICENESS)."""

from __future__ import annotations

import json
import os
import sys

from personalize.config import Settings
from personalize.db import Database
from personalize.evaluation.jobs import WORKER_NICENESS, run_job


def main() -> int:
    payload = json.loads(sys.stdin.read())
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # not permitted here: run at the same priority
        pass
    settings = Settings(**payload["settings"])
    db = Database.for_settings(settings)
    try:
        run_job(settings, db, payload["kind"], payload["id"], payload["owner"])
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())

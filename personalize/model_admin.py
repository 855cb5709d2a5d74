"""Model export, import and reset (Personalizer's ``/model``), and its properties.

Models are the learner's snapshots in the database, so an import or a reset is simply a new
snapshot (the newest version): every ranker loads it as it loads any new snapshot, and the
learner, whose next publish finds its version taken, restores from it and continues learning
from there (personalize/learner.py). Nothing is overwritten: older snapshots stay until pruned.

Export formats:

- ``signed=false``: the VW model bytes, exactly as stored (``vw -i`` reads them).
- ``signed=true``: a zip archive holding ``model.vw`` (those bytes), ``metadata.json`` (the VW
  arguments of the policy, the snapshot version, events learned, times and the model's SHA-256)
  and ``signature`` (hex HMAC-SHA256 of ``metadata.json`` with the server's ``model_signing_key``).
  The signature proves the archive came from a server holding that key and was not altered.

Import takes either form. A server with a ``model_signing_key`` accepts only archives signed with
it (Personalizer imported signed files only); one without accepts raw VW bytes. Either way the
model must load in VW as a ``--cb_explore_adf`` model with the options of the running policy, or
the import is a 400 and nothing changes.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from personalize import store
from personalize.api.errors import ApiError
from personalize.config import Settings
from personalize.db import Database
from personalize.models import ModelSnapshot
from personalize.policy import stored_arguments_query
from personalize.vw import Model

__all__ = ["export_model", "import_model", "reset_model", "model_properties", "check_model", "vw_options", "Installed"]

ARCHIVE_FORMAT = "personalize-model/1"
_ZIP_MAGIC = b"PK\x03\x04"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def vw_options(model: bytes) -> str | None:
    """The VW options a serialized model carries (its header's option string), or None if none is found."""
    start = model.find(b" --")
    if start < 4:
        return None
    length = int.from_bytes(model[start - 4:start], "little")
    text = model[start:start + length]
    return text.rstrip(b"\0").decode("utf-8", "replace").strip()


def _fresh(settings: Settings) -> bytes:
    return Model(settings.vw_args).serialize()


def check_model(model: bytes, settings: Settings) -> None:
    """A 400 unless ``model`` is a whole VW model of the running policy (it is only read, never served)."""
    try:
        loaded = Model(["--quiet"], model_data=model).serialize()
    except (RuntimeError, ValueError) as exc:
        raise ApiError(400, "InvalidModelImportFormat", f"The file is not a VW contextual bandit model this server can "
                       f"load ({str(exc)[:200]}); import a file exported by GET /model.", "body") from None
    expected = vw_options(_fresh(settings))
    found = vw_options(loaded)
    if found != expected:
        raise ApiError(400, "InvalidModelImportFormat", f"The model was trained with VW options {found!r}, but the "
                       f"running learning policy has {expected!r} (PERSONALIZE_LEARNING_POLICY); import a model of "
                       "this policy.", "body")
    if len(loaded) != len(model):  # VW read it without reaching its end, or ran past it: cut or padded
        raise ApiError(400, "InvalidModelImportFormat", f"The file is {len(model)} bytes but holds a VW model of "
                       f"{len(loaded)} bytes: it was cut or has extra bytes; export it again.", "body")


def _latest(session: Session) -> ModelSnapshot | None:
    return store.latest_snapshot(session)


def export_model(session: Session, settings: Settings, signed: bool, now: float) -> bytes:
    """The newest model (an untrained one of the running policy if none was learned yet), raw or signed."""
    settings = in_force(session, settings)
    snapshot = _latest(session)
    model = snapshot.model if snapshot is not None else _fresh(settings)
    if not signed:
        return model
    if not settings.model_signing_key:
        raise ApiError(400, "BadRequest", "signed=true needs a signing key: set PERSONALIZE_MODEL_SIGNING_KEY on the "
                       "server, or export with signed=false (the raw VW model).", "signed")
    metadata = {
        "format": ARCHIVE_FORMAT,
        "vwArgs": " ".join(settings.vw_args),
        "version": snapshot.version if snapshot is not None else 0,
        "eventsLearned": snapshot.events_learned if snapshot is not None else 0,
        "creationTime": _iso(snapshot.lineage_created_at or snapshot.created_at) if snapshot is not None else None,
        "lastModifiedTime": _iso(snapshot.created_at) if snapshot is not None else None,
        "exportedAt": _iso(now),
        "modelSha256": hashlib.sha256(model).hexdigest(),
    }
    meta_bytes = json.dumps(metadata, indent=2, sort_keys=True).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.vw", model)
        archive.writestr("metadata.json", meta_bytes)
        archive.writestr("signature", _signature(settings.model_signing_key, meta_bytes))
    return buffer.getvalue()


def _signature(key: str, metadata: bytes) -> str:
    return hmac.new(key.encode("utf-8"), metadata, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Upload:
    model: bytes
    events_learned: int


def read_upload(data: bytes, settings: Settings) -> Upload:
    """The model in an uploaded file, its signature checked (a 400 naming the problem otherwise)."""
    if not data:
        raise ApiError(400, "InvalidModelImportFormat", "The body is empty; send a model file exported by GET /model "
                       "(Content-Type: application/octet-stream).", "body")
    if not data.startswith(_ZIP_MAGIC):
        if settings.model_signing_key:
            raise ApiError(400, "InvalidModelImportSignature", "This server imports signed models only "
                           "(PERSONALIZE_MODEL_SIGNING_KEY is set): export with GET /model?signed=true.", "body")
        return Upload(data, 0)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            model = archive.read("model.vw")
            meta_bytes = archive.read("metadata.json")
            signature = archive.read("signature").decode("ascii", "replace").strip()
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, RuntimeError, ValueError) as exc:
        raise ApiError(400, "InvalidModelImportFormat", f"The archive is not a signed model export ({str(exc)[:120]}); "
                       "send the file GET /model?signed=true returned, unchanged.", "body") from None
    if not settings.model_signing_key:
        raise ApiError(400, "InvalidModelImportSignature", "This is a signed archive but this server has no "
                       "PERSONALIZE_MODEL_SIGNING_KEY to check it with: set the exporting server's key, or import the "
                       "raw model (GET /model?signed=false).", "body")
    if not hmac.compare_digest(signature, _signature(settings.model_signing_key, meta_bytes)):
        raise ApiError(400, "InvalidModelImportSignature", "The archive's signature does not match: it was altered, or "
                       "signed with another PERSONALIZE_MODEL_SIGNING_KEY.", "body")
    try:
        metadata: dict[str, Any] = json.loads(meta_bytes)
    except ValueError:
        raise ApiError(400, "InvalidModelImportFormat", "The archive's metadata.json is not JSON.", "body") from None
    if metadata.get("format") != ARCHIVE_FORMAT or metadata.get("modelSha256") != hashlib.sha256(model).hexdigest():
        raise ApiError(400, "InvalidModelImportFormat", "The archive's model does not match its signed metadata (format "
                       f"{ARCHIVE_FORMAT}, modelSha256).", "body")
    learned = metadata.get("eventsLearned")
    return Upload(model, learned if isinstance(learned, int) and learned >= 0 else 0)


@dataclass(frozen=True)
class Installed:
    version: int
    model: bytes
    vw_args: str  # the policy it was stored under


def in_force(session: Session, settings: Settings) -> Settings:
    """``settings`` with the learning policy in force (the stored one, PUT /configurations/policy, else the setting):
    a model is checked, reset and stored under it, so the learner continues from it instead of rebuilding."""
    stored = session.execute(stored_arguments_query()).scalar()
    return settings if stored is None else settings.replace_policy(stored)


def _install(db: Database, settings: Settings, model: bytes, events_learned: int, now: float) -> Installed:
    """Store ``model`` as the newest snapshot, starting a new lineage (retried if a learner publishes meanwhile)."""
    vw_args = " ".join(settings.vw_args)
    for _ in range(5):
        try:
            with db.write() as session:
                version = (session.execute(select(func.max(ModelSnapshot.version))).scalar() or 0) + 1
                store.insert_snapshot(session, version, model, vw_args, events_learned, now, now)
            return Installed(version, model, vw_args)
        except IntegrityError:  # a learner took that version first: take the next one
            continue
    raise ApiError(409, "Conflict", "The model kept changing while it was replaced; retry.")


def import_model(db: Database, settings: Settings, data: bytes, now: float) -> Installed:
    """Check an uploaded model (signature, format, policy) and make it the served and learned model."""
    with db.read() as session:
        settings = in_force(session, settings)
    upload = read_upload(data, settings)
    check_model(upload.model, settings)
    return _install(db, settings, upload.model, upload.events_learned, now)


def reset_model(db: Database, settings: Settings, now: float) -> Installed:
    """Start over from an untrained model of the running policy (the logs stay)."""
    with db.read() as session:
        settings = in_force(session, settings)
    return _install(db, settings, _fresh(settings), 0, now)


def model_properties(session: Session) -> dict[str, str]:
    """Personalizer's ModelProperties: when the current model lineage began, and its newest snapshot."""
    snapshot = session.execute(
        select(ModelSnapshot.created_at, ModelSnapshot.lineage_created_at).order_by(ModelSnapshot.version.desc()).limit(1)
    ).first()
    if snapshot is None:
        return {}
    created = snapshot.lineage_created_at
    if created is None:  # a snapshot from before lineages were recorded: the oldest one kept
        created = session.execute(select(func.min(ModelSnapshot.created_at))).scalar()
    return {"creationTime": _iso(created), "lastModifiedTime": _iso(snapshot.created_at)}

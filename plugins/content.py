"""``content``: items whose text and categories resemble the user's history (or the session's items, or the current item).

TF-IDF (scikit-learn) over each item's features: string features are text (split into words),
lists of strings are categories (``genres=Comedy``, ``tags=pixar``), true booleans are flags.
Numbers are left to the bandit. Because it needs no interactions on the item, this is the
generator that can propose brand-new items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from personalize.catalog import TrainingData, item_tokens
from personalize.generator import CandidateRequest, ScoringGenerator
from personalize.hookspecs import hookimpl


@dataclass(frozen=True)
class ContentConfig:
    #: Terms in fewer items than this are ignored (typos, unique ids in titles).
    min_df: int = 2


class ContentGenerator(ScoringGenerator):
    """Cosine similarity between item TF-IDF vectors and the user's profile (their items' weighted mean)."""

    name = "content"
    Config = ContentConfig
    vectors: sparse.csr_matrix
    profiles: sparse.csr_matrix

    def fit_scores(self, data: TrainingData) -> None:
        documents = [item_tokens(f) for f in data.item_features]
        if any(documents):
            vectorizer = TfidfVectorizer(analyzer=list, min_df=min(self.config.min_df, len(documents)), sublinear_tf=True)
            try:
                self.vectors = vectorizer.fit_transform(documents).tocsr()
            except ValueError:  # every term pruned by min_df
                self.vectors = sparse.csr_matrix((len(documents), 0))
        else:
            self.vectors = sparse.csr_matrix((len(documents), 0))
        profiles = (data.user_items @ self.vectors).tocsr()
        # No users or no terms (numbers only, or every term in a single item): nothing to normalize,
        # and every query is empty, so the generator proposes nothing rather than failing the fit.
        self.profiles = normalize(profiles, norm="l2").tocsr() if profiles.shape[0] and profiles.shape[1] else profiles

    def scores(self, request: CandidateRequest) -> np.ndarray | None:
        current = self.item_index.get(request.current_item) if request.current_item else None
        if current is not None:
            query = self.vectors[current]
        elif request.session_items:
            history = self.history(request)  # the user's items and the session's
            if history is None or not self.vectors.shape[1]:
                return None
            query = normalize(history @ self.vectors, norm="l2").tocsr()
        else:
            row = self.user_row(request.user_id)
            if row is None:
                return None
            query = self.profiles[row]
        if query.nnz == 0:
            return None
        dense = self.vectors @ query.toarray().ravel()  # sparse x dense: one pass, no sparse result
        return np.where(dense > 0, dense, -np.inf)


@hookimpl
def register_generators() -> list[type]:
    return [ContentGenerator]

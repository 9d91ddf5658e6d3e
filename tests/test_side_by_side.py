"""The side-by-side pages name live symbols: every one resolves, a missing one stops the site's
build with its name, and each piece shows all three frameworks with their line counts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))

import side_by_side  # noqa: E402


def test_every_piece_shows_every_framework_from_a_symbol_that_exists():
    for piece in side_by_side.PIECES:
        assert set(piece.code) == set(side_by_side.FRAMEWORKS), piece.title
        for framework, entries in piece.code.items():
            for path, symbol in entries:
                assert side_by_side.find(path, symbol).strip(), f"{piece.title}: {framework} {path}:{symbol}"


def test_a_symbol_that_is_gone_is_named(monkeypatch):
    gone = side_by_side.Piece("Losses", "", {"pytorch": [("pytorch_impl/step.py", "no_such_loss")]})
    monkeypatch.setattr(side_by_side, "PIECES", [gone])
    with pytest.raises(side_by_side.MissingSymbol, match="pytorch_impl/step.py: no symbol 'no_such_loss'"):
        side_by_side.tabs_page()


def test_methods_are_found_by_class_and_name_and_dedented():
    source = side_by_side.find("pytorch_impl/backend.py", "Trainer.__init__")
    assert source.startswith("def __init__(")
    with pytest.raises(side_by_side.MissingSymbol, match="Trainer.no_such_method"):
        side_by_side.find("pytorch_impl/backend.py", "Trainer.no_such_method")


def test_the_pages_sync_their_tabs_and_link_each_piece_to_its_columns():
    tabs = side_by_side.tabs_page()
    assert tabs.count(":sync-group: framework") == len(side_by_side.PIECES)
    for piece in side_by_side.PIECES:
        assert f"(side-by-side-columns.md#{side_by_side.slug(piece.title)})" in tabs
        for path, symbol in piece.code["jax"]:
            assert f"{{literalinclude}} /{path}\n:pyobject: {symbol}" in tabs
    columns = side_by_side.columns_page()
    assert columns.count(":class-container: sbs-columns") == len(side_by_side.PIECES)

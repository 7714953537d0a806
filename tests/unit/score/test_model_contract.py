"""Model versions order by their numbers, so the newest model is the one loaded by default."""

from __future__ import annotations

import pytest

from services.score.domain.model_contract import newest_version, version_key


def test_versions_compare_number_by_number_not_as_text() -> None:
    assert newest_version(["1.2.0", "1.10.0", "1.9.9"]) == "1.10.0"


def test_names_that_are_not_versions_are_ignored() -> None:
    assert newest_version(["README.md", "__pycache__", "1.0.0", "latest"]) == "1.0.0"


def test_no_version_at_all_gives_none() -> None:
    assert newest_version(["notes"]) is None


@pytest.mark.parametrize("name", ["", "1..0", "v1.0", "1.0-rc1", "1.x"])
def test_malformed_versions_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="dotted numbers"):
        version_key(name)

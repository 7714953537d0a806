"""The score's features are behaviour only: no protected attribute is ever a feature."""

from __future__ import annotations


def test_protected_attributes_are_never_features() -> None:
    from services.score.domain.features import FEATURE_NAMES, FEATURES

    protected = ("sex", "gender", "age", "education", "marriage", "marital")
    for feature in FEATURES:
        words = set(feature.name.split("_")) | set(feature.description.lower().split())
        assert not words & set(protected), feature.name
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)

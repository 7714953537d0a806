"""Consent to be scored: a score is computed only for a user whose consent is granted now.

The ledger records consent as a fact on the user's chain (granted, withdrawn, or never given)
and answers it with every credit history, as it stands at the moment of reading whatever the
history's as_of: a withdrawal stops every score from the moment it is recorded, scores of the
past included. The refusal is a business rule, FAILED_PRECONDITION, with a reason that tells
the user what to do (grant it) from the case where they chose not to be scored (withdrew it).
"""

from __future__ import annotations

from enum import StrEnum

from services.common.errors import FailedPrecondition
from services.score.domain import error_reasons


class ConsentState(StrEnum):
    NOT_GIVEN = "NOT_GIVEN"
    GRANTED = "GRANTED"
    WITHDRAWN = "WITHDRAWN"


def require_consent(consent: ConsentState) -> None:
    """Raises unless the user's consent to be scored is granted."""
    if consent is ConsentState.GRANTED:
        return
    if consent is ConsentState.WITHDRAWN:
        raise FailedPrecondition(
            "the user withdrew consent to be scored", reason=error_reasons.CONSENT_WITHDRAWN
        )
    raise FailedPrecondition(
        "the user has not granted consent to be scored; the user grants it on their own"
        " channel (the ledger's RecordConsent)",
        reason=error_reasons.CONSENT_MISSING,
    )

"""Scenario policies: put, read, list, and the seed file loaded when the service starts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

from services.common.clock import Clock
from services.common.errors import Conflict, NotFound
from services.common.validation import Violations
from services.waiver.domain import commands, reasons
from services.waiver.domain.policy import ScenarioPolicy, check_policy
from services.waiver.service.ports import RequestOutcome, RequestRecord, WaiverStorage

PUT_METHOD = "PutScenarioPolicy"


class PolicyService:
    def __init__(self, storage: WaiverStorage, clock: Clock, currency_code: str) -> None:
        self._storage = storage
        self._clock = clock
        self._currency_code = currency_code

    def put(self, command: commands.PutScenarioPolicy) -> ScenarioPolicy:
        violations = Violations()
        violations.request_id(command.request_id)
        check_policy(violations, command.policy, self._currency_code)
        violations.raise_if_any()
        policy = command.policy
        record = RequestRecord(
            policy.merchant_id,
            command.request_id,
            PUT_METHOD,
            _policy_hash(policy),
            "",
            RequestOutcome.APPLIED,
        )
        with self._storage.transaction() as transaction:
            found = transaction.find_request(policy.merchant_id, command.request_id)
            if found is not None:
                if (found.method, found.request_hash) != (record.method, record.request_hash):
                    raise Conflict(
                        "this request_id was used for a different request",
                        reason=reasons.REQUEST_ID_REUSED,
                    )
                stored = transaction.get_policy(policy.merchant_id, policy.scenario_id)
                assert stored is not None
                return stored
            stored = replace(policy, update_time_us=self._clock.now_us())
            transaction.put_policy(stored)
            transaction.save_request(record)
        return stored

    def seed(self, policies: list[ScenarioPolicy]) -> int:
        """Stores the policies not stored yet (a policy put since is left as it is); how many
        were stored. Each is checked as PutScenarioPolicy checks it."""
        stored = 0
        for policy in policies:
            violations = Violations()
            check_policy(violations, policy, self._currency_code)
            violations.raise_if_any()
            with self._storage.transaction() as transaction:
                if transaction.get_policy(policy.merchant_id, policy.scenario_id) is None:
                    transaction.put_policy(replace(policy, update_time_us=self._clock.now_us()))
                    stored += 1
        return stored

    def get(self, merchant_id: str, scenario_id: str) -> ScenarioPolicy:
        with self._storage.transaction() as transaction:
            policy = transaction.get_policy(merchant_id, scenario_id)
        if policy is None:
            raise NotFound(
                "the merchant has no policy for this scenario", reason=reasons.SCENARIO_NOT_FOUND
            )
        return policy

    def list(
        self, merchant_id: str, after_scenario_id: str, size: int
    ) -> tuple[list[ScenarioPolicy], str]:
        """A page of policies and the scenario id to continue after ("" when none remain)."""
        found = self._storage.list_policies(merchant_id, after_scenario_id, size + 1)
        page = found[:size]
        return page, (page[-1].scenario_id if len(found) > size else "")


def _policy_hash(policy: ScenarioPolicy) -> str:
    plain = asdict(policy)
    plain.pop("update_time_us")
    canonical = json.dumps(plain, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()

"""The merchant's requests as the use cases take them: plain values, already checked field by
field at the edge (`api/mapping.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from services.waiver.domain.order import LineItem, OrderRequest
from services.waiver.domain.policy import ScenarioPolicy


@dataclass(frozen=True)
class CreateOrder:
    request_id: str
    order: OrderRequest


@dataclass(frozen=True)
class CompleteOrder:
    request_id: str
    merchant_id: str
    out_order_no: str
    total_minor: int
    end_time_us: int
    post_payments: tuple[LineItem, ...]
    post_discounts: tuple[LineItem, ...]


@dataclass(frozen=True)
class CancelOrder:
    request_id: str
    merchant_id: str
    out_order_no: str
    reason: str


@dataclass(frozen=True)
class SyncPayment:
    request_id: str
    merchant_id: str
    out_order_no: str
    amount_minor: int
    paid_time_us: int


@dataclass(frozen=True)
class ModifyOrder:
    request_id: str
    merchant_id: str
    out_order_no: str
    total_minor: int
    reason: str


@dataclass(frozen=True)
class PutScenarioPolicy:
    request_id: str
    policy: ScenarioPolicy


OrderCommand = CompleteOrder | CancelOrder | SyncPayment | ModifyOrder

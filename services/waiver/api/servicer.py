"""WaiverServicer: sesame.waiver.v1.WaiverService over the waiver's use cases.

Each RPC reads its request (`mapping.RequestReader`, which checks every field), calls one use
case with the caller's remaining deadline, and maps the result back. Errors are `SesameError`s
raised below; the server's interceptor turns them into statuses with ErrorInfo and BadRequest.
"""

from __future__ import annotations

import grpc
from sesame.waiver.v1 import waiver_service_pb2 as pb, waiver_service_pb2_grpc

from services.common.deadline import Deadline
from services.common.runtime import GrpcServer
from services.waiver.api import mapping
from services.waiver.service.orders import OrderService, OrderView
from services.waiver.service.policies import PolicyService

SERVICE_NAME = "sesame.waiver.v1.WaiverService"


class WaiverServicer(waiver_service_pb2_grpc.WaiverServiceServicer):
    def __init__(self, orders: OrderService, policies: PolicyService, currency_code: str) -> None:
        self._orders = orders
        self._policies = policies
        self._currency_code = currency_code
        self._read = mapping.RequestReader(currency_code)

    def add_to_server(self, server: GrpcServer) -> None:
        waiver_service_pb2_grpc.add_WaiverServiceServicer_to_server(self, server)

    def _order(self, view: OrderView) -> pb.Order:
        return mapping.order_message(view, self._currency_code)

    # Orders

    def CreateOrder(
        self, request: pb.CreateOrderRequest, context: grpc.ServicerContext
    ) -> pb.CreateOrderResponse:
        view = self._orders.create_order(self._read.create_order(request), _deadline(context))
        return pb.CreateOrderResponse(order=self._order(view))

    def GetOrder(
        self, request: pb.GetOrderRequest, context: grpc.ServicerContext
    ) -> pb.GetOrderResponse:
        view = self._orders.get_order(*self._read.order_key(request))
        return pb.GetOrderResponse(order=self._order(view))

    def ListOrders(
        self, request: pb.ListOrdersRequest, context: grpc.ServicerContext
    ) -> pb.ListOrdersResponse:
        merchant_id, state, after, size = self._read.list_orders(request)
        page = self._orders.list_orders(merchant_id, state, after, size)
        token = (
            ""
            if page.next_after is None
            else mapping.page_token(
                {"merchant_id": merchant_id, "state": request.state}, page.next_after
            )
        )
        return pb.ListOrdersResponse(
            orders=[self._order(view) for view in page.orders], next_page_token=token
        )

    def ModifyOrder(
        self, request: pb.ModifyOrderRequest, context: grpc.ServicerContext
    ) -> pb.ModifyOrderResponse:
        view = self._orders.modify_order(self._read.modify_order(request), _deadline(context))
        return pb.ModifyOrderResponse(order=self._order(view))

    def CompleteOrder(
        self, request: pb.CompleteOrderRequest, context: grpc.ServicerContext
    ) -> pb.CompleteOrderResponse:
        view = self._orders.complete_order(self._read.complete_order(request), _deadline(context))
        return pb.CompleteOrderResponse(order=self._order(view))

    def CancelOrder(
        self, request: pb.CancelOrderRequest, context: grpc.ServicerContext
    ) -> pb.CancelOrderResponse:
        view = self._orders.cancel_order(self._read.cancel_order(request), _deadline(context))
        return pb.CancelOrderResponse(order=self._order(view))

    def SyncPayment(
        self, request: pb.SyncPaymentRequest, context: grpc.ServicerContext
    ) -> pb.SyncPaymentResponse:
        view = self._orders.sync_payment(self._read.sync_payment(request), _deadline(context))
        return pb.SyncPaymentResponse(order=self._order(view))

    # Policies

    def PutScenarioPolicy(
        self, request: pb.PutScenarioPolicyRequest, context: grpc.ServicerContext
    ) -> pb.PutScenarioPolicyResponse:
        policy = self._policies.put(self._read.put_scenario_policy(request))
        return pb.PutScenarioPolicyResponse(
            policy=mapping.policy_message(policy, self._currency_code)
        )

    def GetScenarioPolicy(
        self, request: pb.GetScenarioPolicyRequest, context: grpc.ServicerContext
    ) -> pb.GetScenarioPolicyResponse:
        policy = self._policies.get(*self._read.policy_key(request))
        return pb.GetScenarioPolicyResponse(
            policy=mapping.policy_message(policy, self._currency_code)
        )

    def ListScenarioPolicies(
        self, request: pb.ListScenarioPoliciesRequest, context: grpc.ServicerContext
    ) -> pb.ListScenarioPoliciesResponse:
        merchant_id, after, size = self._read.list_scenario_policies(request)
        policies, last = self._policies.list(merchant_id, after, size)
        token = "" if not last else mapping.page_token({"merchant_id": merchant_id}, (last,))
        return pb.ListScenarioPoliciesResponse(
            policies=[mapping.policy_message(policy, self._currency_code) for policy in policies],
            next_page_token=token,
        )


def _deadline(context: grpc.ServicerContext) -> Deadline:
    """What remains of the caller's deadline (none when the caller set none)."""
    remaining_s = context.time_remaining()
    return Deadline.after(None if remaining_s is None or remaining_s > 1e9 else remaining_s)

"""LedgerServicer: sesame.ledger.v1.LedgerService over the ledger's service layer.

Each method maps the request to a command or query, calls the service and maps the result
back. Errors are `SesameError`s raised below; the server's interceptor turns them into
statuses with ErrorInfo and BadRequest details.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from sesame.ledger.v1 import ledger_service_pb2 as pb, ledger_service_pb2_grpc

from services.common.runtime import GrpcServer
from services.ledger.api import mapping
from services.ledger.api.metrics import record_verification
from services.ledger.service.ledger_service import CaughtUp, LedgerService

SERVICE_NAME = "sesame.ledger.v1.LedgerService"


class LedgerServicer(ledger_service_pb2_grpc.LedgerServiceServicer):
    def __init__(self, service: LedgerService) -> None:
        self._service = service

    def add_to_server(self, server: GrpcServer) -> None:
        ledger_service_pb2_grpc.add_LedgerServiceServicer_to_server(self, server)

    # Holds

    def SetWaiverCapacity(
        self, request: pb.SetWaiverCapacityRequest, context: grpc.ServicerContext
    ) -> pb.SetWaiverCapacityResponse:
        summary = self._service.set_waiver_capacity(mapping.set_waiver_capacity_command(request))
        return pb.SetWaiverCapacityResponse(account=mapping.account_summary_message(summary))

    def PlaceHold(
        self, request: pb.PlaceHoldRequest, context: grpc.ServicerContext
    ) -> pb.PlaceHoldResponse:
        hold = self._service.place_hold(mapping.place_hold_command(request))
        return pb.PlaceHoldResponse(hold=mapping.hold_message(hold))

    def CaptureHold(
        self, request: pb.CaptureHoldRequest, context: grpc.ServicerContext
    ) -> pb.CaptureHoldResponse:
        result = self._service.capture_hold(mapping.capture_hold_command(request))
        response = pb.CaptureHoldResponse(hold=mapping.hold_message(result.hold))
        if result.obligation is not None:
            response.obligation.CopyFrom(mapping.obligation_message(result.obligation))
        return response

    def ReleaseHold(
        self, request: pb.ReleaseHoldRequest, context: grpc.ServicerContext
    ) -> pb.ReleaseHoldResponse:
        hold = self._service.release_hold(mapping.release_hold_command(request))
        return pb.ReleaseHoldResponse(hold=mapping.hold_message(hold))

    def GetHold(
        self, request: pb.GetHoldRequest, context: grpc.ServicerContext
    ) -> pb.GetHoldResponse:
        return pb.GetHoldResponse(
            hold=mapping.hold_message(self._service.get_hold(request.hold_id))
        )

    def SweepExpiredHolds(
        self, request: pb.SweepExpiredHoldsRequest, context: grpc.ServicerContext
    ) -> pb.SweepExpiredHoldsResponse:
        result = self._service.sweep_expired_holds(request.max_holds)
        return pb.SweepExpiredHoldsResponse(
            expired_count=result.expired_count, more_remaining=result.more_remaining
        )

    # Obligations

    def CreateObligation(
        self, request: pb.CreateObligationRequest, context: grpc.ServicerContext
    ) -> pb.CreateObligationResponse:
        obligation = self._service.create_obligation(mapping.create_obligation_command(request))
        return pb.CreateObligationResponse(obligation=mapping.obligation_message(obligation))

    def RecordPayment(
        self, request: pb.RecordPaymentRequest, context: grpc.ServicerContext
    ) -> pb.RecordPaymentResponse:
        obligation = self._service.record_payment(mapping.record_payment_command(request))
        return pb.RecordPaymentResponse(obligation=mapping.obligation_message(obligation))

    def CloseObligation(
        self, request: pb.CloseObligationRequest, context: grpc.ServicerContext
    ) -> pb.CloseObligationResponse:
        obligation = self._service.close_obligation(mapping.close_obligation_command(request))
        return pb.CloseObligationResponse(obligation=mapping.obligation_message(obligation))

    def ReduceObligation(
        self, request: pb.ReduceObligationRequest, context: grpc.ServicerContext
    ) -> pb.ReduceObligationResponse:
        obligation = self._service.reduce_obligation(mapping.reduce_obligation_command(request))
        return pb.ReduceObligationResponse(obligation=mapping.obligation_message(obligation))

    def GetObligation(
        self, request: pb.GetObligationRequest, context: grpc.ServicerContext
    ) -> pb.GetObligationResponse:
        obligation = self._service.get_obligation(request.obligation_id)
        return pb.GetObligationResponse(obligation=mapping.obligation_message(obligation))

    # The person's rights: consent to be scored, and a statement on a negative record

    def RecordConsent(
        self, request: pb.RecordConsentRequest, context: grpc.ServicerContext
    ) -> pb.RecordConsentResponse:
        consent = self._service.record_consent(mapping.record_consent_command(request))
        return pb.RecordConsentResponse(consent=mapping.consent_message(consent))

    def AttachStatement(
        self, request: pb.AttachStatementRequest, context: grpc.ServicerContext
    ) -> pb.AttachStatementResponse:
        obligation = self._service.attach_statement(mapping.attach_statement_command(request))
        return pb.AttachStatementResponse(obligation=mapping.obligation_message(obligation))

    # Partner statements and reads

    def RecordPartnerStatements(
        self, request: pb.RecordPartnerStatementsRequest, context: grpc.ServicerContext
    ) -> pb.RecordPartnerStatementsResponse:
        outcome = self._service.record_partner_statements(
            mapping.record_partner_statements_command(request)
        )
        return pb.RecordPartnerStatementsResponse(
            results=[mapping.partner_report_result_message(result) for result in outcome.results]
        )

    def GetAccountSummary(
        self, request: pb.GetAccountSummaryRequest, context: grpc.ServicerContext
    ) -> pb.GetAccountSummaryResponse:
        summary = self._service.get_account_summary(request.user_id)
        return pb.GetAccountSummaryResponse(account=mapping.account_summary_message(summary))

    def GetCreditHistory(
        self, request: pb.GetCreditHistoryRequest, context: grpc.ServicerContext
    ) -> pb.GetCreditHistoryResponse:
        history = self._service.get_credit_history(
            request.user_id, mapping.as_of_us(request), request.max_statements
        )
        return mapping.credit_history_message(history)

    def ListEntries(
        self, request: pb.ListEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListEntriesResponse:
        page = self._service.list_entries(request.user_id, request.page_size, request.page_token)
        return pb.ListEntriesResponse(
            entries=[mapping.entry_message(entry) for entry in page.entries],
            next_page_token=page.next_page_token,
        )

    def VerifyChain(
        self, request: pb.VerifyChainRequest, context: grpc.ServicerContext
    ) -> pb.VerifyChainResponse:
        checkpoint = mapping.verify_chain_checkpoint(request)
        report = self._service.verify_chain(request.user_id, checkpoint)
        record_verification(report.intact)
        return mapping.verification_message(report)

    def GetCheckpointProof(
        self, request: pb.GetCheckpointProofRequest, context: grpc.ServicerContext
    ) -> pb.GetCheckpointProofResponse:
        proof = self._service.checkpoint_proof(request.user_id, request.checkpoint_sequence)
        return mapping.checkpoint_proof_message(proof)

    def WatchEntries(
        self, request: pb.WatchEntriesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchEntriesResponse]:
        # is_active turns false when the client cancels or the server stops the call; the
        # service checks it between pages and at least every poll interval.
        entries = self._service.watch_entries(
            request.after_global_sequence,
            should_continue=context.is_active,
            credit_history_only=request.credit_history_only,
            report_caught_up=request.report_caught_up,
            from_now=request.from_now,
        )
        for entry in entries:
            if isinstance(entry, CaughtUp):
                yield pb.WatchEntriesResponse(
                    caught_up=pb.CaughtUp(global_sequence=entry.global_sequence)
                )
            else:
                yield pb.WatchEntriesResponse(entry=mapping.entry_message(entry))

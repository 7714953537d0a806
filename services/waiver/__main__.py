"""Runs the waiver service: `python -m services.waiver`, configured by SESAME_WAIVER_* variables.

Orders and scenario policies arrive with the waiver issues; until then every RPC answers
UNIMPLEMENTED rather than pretending to decide anything.
"""

from sesame.waiver.v1 import waiver_service_pb2_grpc

from services.common.server import ServiceRegistration, serve
from services.common.settings import load_settings
from services.waiver.settings import WaiverSettings

SERVICE_NAME = "sesame.waiver.v1.WaiverService"


def registration() -> ServiceRegistration:
    # The generated base answers every RPC with UNIMPLEMENTED until its issue lands.
    servicer = waiver_service_pb2_grpc.WaiverServiceServicer()  # type: ignore[abstract]
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: waiver_service_pb2_grpc.add_WaiverServiceServicer_to_server(
            servicer, server
        ),
    )


def main() -> None:
    settings = load_settings(WaiverSettings)
    serve(settings, [registration()], service_name="waiver")


if __name__ == "__main__":
    main()

"""Every overlay renders with `kubectl kustomize`, and every rendered document is valid for
Kubernetes in strict mode (no field Kubernetes does not know), against the oldest version the
manifests support and the newest kubernetes-validate knows. The custom resources of operators
(CUSTOM_RESOURCE_KINDS) are the only exceptions; any other unknown kind fails."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.support.manifests import CUSTOM_RESOURCE_KINDS, OVERLAYS, render

# Native gRPC probes are GA from 1.27; the oldest Kubernetes still maintained upstream when these
# manifests were written is 1.31, and 1.30 is kept for managed clusters a release behind.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_every_rendered_document_is_valid_kubernetes(overlay: str, kubernetes_version: str) -> None:
    documents = render(overlay)
    assert documents
    for document in documents:
        kind = (document["apiVersion"], document["kind"])
        if kind in CUSTOM_RESOURCE_KINDS:
            continue
        try:
            kubernetes_validate.validate(document, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(
                f"{overlay}: {kind} {document['metadata']['name']}: {error.message} at "
                f"{'.'.join(str(part) for part in error.path)}"
            ) from None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_lands_in_the_sesame_namespace(overlay: str) -> None:
    for document in render(overlay):
        if document["kind"] == "Namespace":
            assert document["metadata"]["name"] == "sesame"
        else:
            assert document["metadata"].get("namespace") == "sesame", document["metadata"]["name"]

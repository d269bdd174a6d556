"""GKE Cloud Logging entries → audit Events (kelemetry.receivers.gkelog): the object named by
resourceName and methodName for every shape of name, the gRPC status as the HTTP code, the user,
caller and timestamps, bodies without Logging's ``@type``, and entries that are not Kubernetes
requests refused with the reason."""

from __future__ import annotations

from typing import Any

import pytest

from kelemetry import errors
from kelemetry.receivers.gkelog import to_audit_event


def entry(method: str, resource_name: str, **payload: Any) -> dict[str, Any]:
    return {
        "insertId": "insert-1",
        "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
        "operation": {"id": "op-1", "first": True, "last": True, "producer": "k8s.io"},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "alice@example.com"},
            "requestMetadata": {"callerIp": "10.0.0.9", "callerSuppliedUserAgent": "kubectl/v1.30.0"},
            "methodName": method,
            "resourceName": resource_name,
            "serviceName": "k8s.io",
            "status": {"code": 0},
            **payload,
        },
        "receiveTimestamp": "2024-05-01T10:00:01.500000Z",
        "timestamp": "2024-05-01T10:00:01.000000Z",
    }


@pytest.mark.parametrize(
    ("method", "resource_name", "expected"),
    [
        pytest.param(
            "io.k8s.apps.v1.deployments.create",
            "apps/v1/namespaces/default/deployments/demo",
            ("apps", "v1", "deployments", "default", "demo", "", "create"),
            id="namespaced",
        ),
        pytest.param(
            "io.k8s.authorization.rbac.v1.clusterroles.delete",
            "rbac.authorization.k8s.io/v1/clusterroles/viewer",
            ("rbac.authorization.k8s.io", "v1", "clusterroles", "", "viewer", "", "delete"),
            id="cluster-scoped-dotted-group",
        ),
        pytest.param(
            "io.k8s.core.v1.namespaces.delete",
            "core/v1/namespaces/team-a",
            ("", "v1", "namespaces", "", "team-a", "", "delete"),
            id="namespace",
        ),
        pytest.param(
            "io.k8s.core.v1.namespaces.finalize.update",
            "core/v1/namespaces/team-a/finalize",
            ("", "v1", "namespaces", "", "team-a", "finalize", "update"),
            id="namespace-subresource",
        ),
        pytest.param(
            "io.k8s.apps.v1.deployments.scale.patch",
            "apps/v1/namespaces/default/deployments/demo/scale",
            ("apps", "v1", "deployments", "default", "demo", "scale", "patch"),
            id="subresource",
        ),
        pytest.param(
            "io.k8s.core.v1.pods.deletecollection",
            "core/v1/namespaces/default/pods",
            ("", "v1", "pods", "default", "", "", "deletecollection"),
            id="collection",
        ),
        pytest.param(
            "io.k8s.core.v1.nodes.status.patch",
            "core/v1/nodes/node-1/status",
            ("", "v1", "nodes", "", "node-1", "status", "patch"),
            id="cluster-scoped-subresource",
        ),
    ],
)
def test_the_object_of_an_entry(method: str, resource_name: str, expected: tuple[str, ...]) -> None:
    event = to_audit_event(entry(method, resource_name))
    ref = event.objectRef
    assert ref is not None
    assert (
        ref.apiGroup,
        ref.apiVersion,
        ref.resource,
        ref.namespace,
        ref.name,
        ref.subresource,
        event.verb,
    ) == (expected)


def test_who_when_and_bodies() -> None:
    request = {"@type": "apps.k8s.io/v1.Deployment", "kind": "Deployment", "metadata": {"name": "demo"}}
    response = {**request, "metadata": {"name": "demo", "uid": "u-1", "resourceVersion": "7"}}
    event = to_audit_event(
        entry(
            "io.k8s.apps.v1.deployments.create",
            "apps/v1/namespaces/default/deployments/demo",
            request=request,
            response=response,
        )
    )
    assert event.auditID == "op-1"
    assert event.stage == "ResponseComplete"
    assert event.user is not None and event.user.username == "alice@example.com"
    assert event.userAgent == "kubectl/v1.30.0" and event.sourceIPs == ("10.0.0.9",)
    assert event.requestReceivedTimestamp == event.stageTimestamp == "2024-05-01T10:00:01.000000Z"
    assert event.request() == {"kind": "Deployment", "metadata": {"name": "demo"}}
    assert event.response()["metadata"]["uid"] == "u-1"
    assert event.objectRef is not None and event.objectRef.uid == "u-1"
    assert event.responseStatus is not None and event.responseStatus.code == 201


@pytest.mark.parametrize(
    ("grpc", "http"),
    [(0, 200), (3, 400), (5, 404), (6, 409), (7, 403), (10, 409), (14, 503), (16, 401), (99, 500)],
)
def test_grpc_status_becomes_the_http_code(grpc: int, http: int) -> None:
    event = to_audit_event(
        entry(
            "io.k8s.core.v1.pods.update",
            "core/v1/namespaces/default/pods/web",
            status={"code": grpc, "message": "why"},
        )
    )
    assert event.responseStatus is not None
    assert event.responseStatus.code == http
    assert event.responseStatus.message == "why"


def test_the_first_entry_of_a_long_request_is_not_its_completion() -> None:
    document = entry("io.k8s.core.v1.pods.exec.create", "core/v1/namespaces/default/pods/web/exec")
    document["operation"]["last"] = False
    assert to_audit_event(document).stage == "ResponseStarted"


def test_without_operation_the_insert_id_is_the_audit_id() -> None:
    document = entry("io.k8s.core.v1.pods.delete", "core/v1/namespaces/default/pods/web")
    del document["operation"]
    del document["timestamp"]
    event = to_audit_event(document)
    assert event.auditID == "insert-1"
    assert event.stageTimestamp == "2024-05-01T10:00:01.500000Z"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        pytest.param(
            entry("google.container.v1.ClusterManager.GetCluster", "projects/p/locations/l/clusters/c"),
            "a Cloud Logging audit entry for 'google.container.v1.ClusterManager.GetCluster', "
            "not a Kubernetes API request",
            id="gke-control-plane-api",
        ),
        pytest.param(
            entry("io.k8s.core.v1.pods.get", "core"),
            "resourceName 'core' names no Kubernetes resource",
            id="short-resource-name",
        ),
        pytest.param(
            entry("io.k8s.core.v1.pods.get", "core/v1/namespaces/default/services/web"),
            "resourceName 'core/v1/namespaces/default/services/web' does not name the pods of "
            "'io.k8s.core.v1.pods.get'",
            id="name-and-method-disagree",
        ),
        pytest.param(
            {
                **entry("io.k8s.core.v1.pods.get", "core/v1/pods"),
                "protoPayload": {"@type": "type.googleapis.com/x"},
            },
            "a Cloud Logging entry of type 'type.googleapis.com/x', not an AuditLog",
            id="other-payload",
        ),
    ],
)
def test_entries_that_are_not_kubernetes_requests(document: dict[str, Any], reason: str) -> None:
    with pytest.raises(errors.WrongKind) as caught:
        to_audit_event(document)
    assert str(caught.value) == reason

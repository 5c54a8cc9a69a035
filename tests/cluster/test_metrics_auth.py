"""/metrics behind the real API server's TokenReview and SubjectAccessReview: a ServiceAccount
bound to the chart's metrics-reader rule may scrape; one that is not gets 403; a token the
API server does not know gets 401."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qmo.kube import KubeReviews, connect
from qmo.metrics_auth import Authorizer
from tests.support.kube import ClusterHandle

READER = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: qmo-test-metrics-reader-{ns}}}
rules:
- nonResourceURLs: [/metrics]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: qmo-test-metrics-reader-{ns}}}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: qmo-test-metrics-reader-{ns}
subjects:
- {{kind: ServiceAccount, name: prometheus, namespace: {ns}}}
"""


@pytest.fixture
def scrapers(cluster: ClusterHandle, namespace: str) -> Iterator[dict[str, str]]:
    for name in ("prometheus", "curious"):
        cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    cluster.apply_yaml(READER.format(ns=namespace))
    tokens = {
        name: cluster.kubectl("create", "token", name, "-n", namespace).stdout.strip()
        for name in ("prometheus", "curious")
    }
    try:
        yield tokens
    finally:
        for kind in ("clusterrolebinding", "clusterrole"):
            cluster.kubectl("delete", kind, f"qmo-test-metrics-reader-{namespace}", check=False)


def test_the_api_server_decides_who_may_scrape(
    cluster: ClusterHandle, scrapers: dict[str, str]
) -> None:
    authorizer = Authorizer(KubeReviews(connect(kubeconfig=cluster.kubeconfig)))
    assert authorizer.status(f"Bearer {scrapers['prometheus']}") == 200
    assert authorizer.status(f"Bearer {scrapers['curious']}") == 403
    assert authorizer.status("Bearer not-a-token") == 401

"""/metrics behind the cluster's own authentication and authorization, as controller-runtime's
secure metrics and kube-rbac-proxy do it: a scrape brings a bearer token (Prometheus' own
ServiceAccount token); the API server says whose it is (TokenReview) and whether they may get
the non-resource URL /metrics (SubjectAccessReview). Without a token: 401; not allowed: 403.
Answers are remembered for `CACHE_SECONDS` per token (hashed), so a scrape every few seconds
costs the API server two requests a minute. Optionally over TLS (a certificate mounted from a
Secret, e.g. cert-manager's): a token should not cross the network in clear.

`qmo run --metrics-auth` turns it on; without it /metrics is prometheus_client's plain server.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import MetricsHandler

log = logging.getLogger("qmo.metrics")
CACHE_SECONDS = 60.0
METRICS_PATH = "/metrics"


class Reviews(Protocol):
    """qmo.kube.KubeReviews, or a stand-in in tests."""

    def user_of(self, token: str) -> dict[str, Any] | None: ...

    def may(self, user: dict[str, Any], verb: str, path: str) -> bool: ...


@dataclass
class Authorizer:
    """Whether a request's Authorization header may read /metrics: 200, 401 or 403."""

    reviews: Reviews
    clock: Callable[[], float] = time.monotonic
    cache_seconds: float = CACHE_SECONDS

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}

    def status(self, authorization: str | None) -> int:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401
        key = hashlib.sha256(token.strip().encode()).hexdigest()  # never the token itself
        now = self.clock()
        with self._lock:
            cached = self._seen.get(key)
            if cached is not None and now - cached[0] < self.cache_seconds:
                return cached[1]
        try:
            user = self.reviews.user_of(token.strip())
            answer = (
                401
                if user is None
                else (200 if self.reviews.may(user, "get", METRICS_PATH) else 403)
            )
        except Exception as err:
            log.warning("Cannot review a /metrics token: %s", type(err).__name__)
            return 503
        with self._lock:
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.cache_seconds}
            self._seen[key] = (now, answer)
        return answer


def _handler(authorizer: Authorizer) -> type[MetricsHandler]:
    class Guarded(MetricsHandler):
        def do_GET(self) -> None:
            answer = authorizer.status(self.headers.get("Authorization"))
            if answer != 200:
                self.send_response(answer)
                if answer == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="qmo-metrics"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Guarded


def serve(
    port: int, authorizer: Authorizer, tls: tuple[str, str] | None = None
) -> ThreadingHTTPServer:
    """Serve the guarded /metrics on `port` in a daemon thread; `tls`: (cert file, key file)."""
    server = ThreadingHTTPServer(("0.0.0.0", port), _handler(authorizer))
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server

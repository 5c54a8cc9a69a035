"""/metrics behind TokenReview and SubjectAccessReview: who may scrape, remembered for a
minute, never the token itself; served over TLS when given a certificate. Real HTTP(S)."""

from __future__ import annotations

import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import qmo.metrics  # noqa: F401  (registers qmo's series, as the operator does)
from e2e.operator_process import free_port
from qmo.metrics_auth import Authorizer, serve


class Reviews:
    """Stands in for the API server: `users` by token, `allowed` usernames."""

    def __init__(self, users: dict[str, str], allowed: set[str]) -> None:
        self.users = users
        self.allowed = allowed
        self.calls = 0
        self.down = False

    def user_of(self, token: str) -> dict[str, Any] | None:
        self.calls += 1
        if self.down:
            raise ConnectionError("the API server is unreachable")
        name = self.users.get(token)
        return {"username": name, "groups": ["system:serviceaccounts"]} if name else None

    def may(self, user: dict[str, Any], verb: str, path: str) -> bool:
        assert (verb, path) == ("get", "/metrics")
        return user["username"] in self.allowed


def test_who_may_scrape_and_how_long_the_answer_is_kept() -> None:
    now = [0.0]
    reviews = Reviews({"t-prom": "prometheus", "t-other": "other"}, {"prometheus"})
    authorizer = Authorizer(reviews, clock=lambda: now[0])
    assert authorizer.status(None) == 401
    assert authorizer.status("Basic abc") == 401
    assert authorizer.status("Bearer nope") == 401
    assert authorizer.status("Bearer t-other") == 403
    assert authorizer.status("Bearer t-prom") == 200
    calls = reviews.calls
    assert authorizer.status("Bearer t-prom") == 200
    assert reviews.calls == calls  # remembered
    now[0] = 61
    reviews.down = True
    assert authorizer.status("Bearer t-prom") == 503  # expired, and the API is down: refused
    assert all("t-prom" not in key for key in authorizer._seen)  # hashes, not tokens


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_metrics_are_served_over_tls_to_allowed_tokens_only(certificate: tuple[str, str]) -> None:
    port = free_port()
    server = serve(port, Authorizer(Reviews({"t": "prometheus"}, {"prometheus"})), certificate)
    context = ssl.create_default_context(cafile=certificate[0])
    try:

        def get(token: str | None) -> tuple[int, bytes]:
            request = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
            if token:
                request.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(request, timeout=10, context=context) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as err:
                return err.code, b""

        status, body = get("t")
        assert status == 200
        assert b"qmo_reconcile_total" in body
        assert get(None)[0] == 401
        assert get("wrong")[0] == 401
    finally:
        server.shutdown()
        server.server_close()

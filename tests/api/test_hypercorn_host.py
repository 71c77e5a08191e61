"""`--server hypercorn`: what it adds (HTTP/2, TLS) works, and no request over any protocol it
accepts can stop the process (issue 8, item 6).

Regression: an unauthenticated h2c (prior knowledge) request with a body over ~64 KB made
hypercorn's h2 code raise KeyError, which ended `hypercorn.trio.serve` and with it kissvdb
(exit 1). Each connection now runs under its own guard (api/hypercorn_host.py).
"""

from __future__ import annotations

import ssl

import httpx
import pytest
import trio
import trustme

from tests.api.conftest import API_KEY, open_api

AUTH = {"Authorization": f"Bearer {API_KEY}"}
TIMEOUT_S = 20


@pytest.fixture
async def hyper(tmp_path):
    async with open_api(tmp_path / "data", http_server="hypercorn") as api:
        yield api


async def test_h2c_prior_knowledge_is_served(hyper):
    with trio.fail_after(TIMEOUT_S):
        async with httpx.AsyncClient(base_url=hyper.url, http1=False, http2=True) as h2:
            reply = await h2.put("/v1/state/k", json={"value": 1}, headers=AUTH)
            assert reply.http_version == "HTTP/2" and reply.status_code == 200
            reply = await h2.get("/v1/state/k", headers=AUTH)
            assert reply.json()["value"] == 1


@pytest.mark.parametrize("path", ["/v1/nonexistent", "/v1/state/k", "/v1/vector/c/upsert_batch"])
async def test_a_large_unauthenticated_h2c_body_does_not_stop_the_server(hyper, path):
    body = b'{"x": "' + b"y" * 70_000 + b'"}'
    with trio.fail_after(TIMEOUT_S):
        for _ in range(3):
            try:
                async with httpx.AsyncClient(base_url=hyper.url, http1=False, http2=True) as h2:
                    reply = await h2.post(path, content=body, headers={"Content-Type": "application/json"})
                    assert reply.status_code in (401, 405, 413)
            except httpx.HTTPError:
                pass  # the connection may be dropped; the server must live on
        # Still serving, over both protocols.
        assert (await hyper.get("/v1/health", auth=False)).status_code == 200
        async with httpx.AsyncClient(base_url=hyper.url, http1=False, http2=True) as h2:
            assert (await h2.get("/v1/health")).status_code == 200


async def test_tls_with_certfile_and_keyfile(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with open_api(tmp_path / "data", http_server="hypercorn", tls_certfile=str(certfile),
                        tls_keyfile=str(keyfile)) as api:
        assert api.url.startswith("https://")
        with trio.fail_after(TIMEOUT_S):
            async with httpx.AsyncClient(base_url=api.url, verify=client_ctx, http2=True) as tls:
                reply = await tls.put("/v1/state/k", json={"value": "secret"}, headers=AUTH)
                assert reply.status_code == 200 and reply.http_version == "HTTP/2"
                assert (await tls.get("/v1/state/k", headers=AUTH)).json()["value"] == "secret"

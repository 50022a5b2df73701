"""The Python package against the real library, a real vault and the real httpbin.

Every test that touches a result, an exception or the audit log checks that no FAKE secret is
in it."""

from __future__ import annotations

import json
import threading

import pytest

import outloop
from conftest import ACME_SECRET, GLOBEX_SECRET, Env

SECRETS = (ACME_SECRET, GLOBEX_SECRET)


def no_secret(*texts: object) -> None:
    for t in texts:
        s = t if isinstance(t, str) else json.dumps(t) if not isinstance(t, BaseException) else str(t)
        for secret in SECRETS:
            assert secret not in s, "a secret leaked"
        assert "FAKE" not in s, "a secret leaked"


def test_abi_version() -> None:
    assert outloop.abi_version() == 2


def test_call_returns_the_redacted_upstream_echo(env: Env) -> None:
    with outloop.Broker(env.home, env.acme) as b:
        r = b.call("echo.bearer")
    assert r["action"] == "echo.bearer" and r["tenant"] == "acme"
    assert r["status"] == 200
    # httpbin /bearer echoes the token it received; the broker redacted it.
    assert json.loads(r["body"]) == {"authenticated": True, "token": "[REDACTED:echo]"}
    assert r["redactions"] >= 1
    assert set(r) == {"action", "tenant", "status", "status_text", "headers", "body", "redactions"}
    no_secret(r, env.audit_text)


def test_params_and_header_echo_are_redacted(env: Env) -> None:
    with outloop.Broker(env.home, env.acme, tenant="acme") as b:
        r = b.call("echo.anything", q="abc-1")
    body = json.loads(r["body"])
    assert body["args"] == {"q": "abc-1"}
    assert body["headers"]["X-Api-Key"] == "[REDACTED:echo]"
    no_secret(r)


def test_wrong_tenant_is_denied(env: Env) -> None:
    with outloop.Broker(env.home, env.acme, tenant="globex") as b:
        with pytest.raises(outloop.PolicyDenied) as e:
            b.call("echo.bearer")
    assert isinstance(e.value, outloop.DeniedError)
    assert e.value.status == 106 and e.value.kind == "policy_denied"
    assert "globex" in str(e.value)
    no_secret(e.value, env.audit_text)


@pytest.mark.parametrize(
    "action, params, exc, status",
    [
        ("echo.delete", {}, outloop.PolicyDenied, 106),
        ("no.such.action", {}, outloop.UnknownAction, 104),
        ("echo.anything", {"q": "NOT valid!"}, outloop.InvalidParameter, 103),
        ("echo.anything", {}, outloop.InvalidParameter, 103),
        ("echo.bad\udcff", {}, outloop.InvalidUtf8, 2),
    ],
)
def test_failures_raise_their_class(env: Env, action: str, params: dict, exc: type, status: int) -> None:
    with outloop.Broker(env.home, env.acme) as b:
        with pytest.raises(exc) as e:
            b.call(action, **params)
    assert e.value.status == status
    assert e.value.message
    no_secret(e.value)


def test_invalid_json_is_reported(env: Env) -> None:
    # The Broker always sends a JSON object; go one level down to send a broken one.
    lib = outloop.library()
    with outloop.Broker(env.home, env.acme) as b:
        import ctypes

        out, n = ctypes.c_void_p(), ctypes.c_size_t()
        status = lib.outloop_call(b._h(), b"echo.bearer", 11, b"{oops", 5, None, 0,
                                  ctypes.byref(out), ctypes.byref(n))
        with pytest.raises(outloop.InvalidJson):
            outloop._check(lib, status)
        assert out.value is None, "out-parameter written on failure"


def test_null_parameter_is_reported() -> None:
    lib = outloop.library()
    status = lib.outloop_actions(None, None, None)
    with pytest.raises(outloop.NullParameter, match="broker"):
        outloop._check(lib, status)


def test_forced_panic_raises_panic() -> None:
    lib = outloop.library()
    with pytest.raises(outloop.Panic) as e:
        outloop._check(lib, lib.outloop_debug_panic())
    assert isinstance(e.value, outloop.InternalError)


def test_unbound_workspace(env: Env) -> None:
    with outloop.Broker(env.home, env.unbound) as b:
        with pytest.raises(outloop.UnboundWorkspace):
            b.call("echo.bearer")
        with pytest.raises(outloop.UnboundWorkspace):
            b.actions()


def test_actions_and_explain(env: Env) -> None:
    with outloop.Broker(env.home, env.acme) as b:
        names = [a["name"] for a in b.actions()]
        assert names == ["echo.anything", "echo.bearer", "alias:httpbin"]
        e = b.explain("echo.delete")
        assert e["decision"] == "deny" and e["tenant"] == "acme"
        assert b.explain("echo.anything", q="x")["decision"] == "allow"
        with pytest.raises(outloop.UnknownAction):
            b.explain("nope")


def test_redact_uses_the_workspace_tenants_secrets(env: Env) -> None:
    with outloop.Broker(env.home, env.acme) as b:
        text, n = b.redact_counted(f"log: token={ACME_SECRET}; done")
        assert text == "log: token=[REDACTED:echo]; done" and n == 1
        raw = b.redact(ACME_SECRET.encode() + b"\x00\xff")
        assert raw == b"[REDACTED:echo]\x00\xff"


def test_request_through_an_alias_is_redacted(env: Env) -> None:
    with outloop.Broker(env.home, env.acme) as b:
        r = b.request("httpbin", "GET", "/headers",
                      headers={"Authorization": "Bearer FAKE-agent", "X-Agent": "seen"})
        assert r["action"] == "alias:httpbin" and r["tenant"] == "acme" and r["status"] == 200
        h = json.loads(r["body"])["headers"]
        assert h["Authorization"] == "Bearer [REDACTED:echo]" and h["X-Agent"] == "seen"
        assert r["redactions"] >= 1
        no_secret(r)
        r = b.request("httpbin", "POST", "/anything/items", query={"page": 2},
                      headers={"Content-Type": "application/octet-stream"}, body=b"\x00\x01\xff")
        body = json.loads(r["body"])
        assert body["args"] == {"page": "2"}
        assert body["data"] == "data:application/octet-stream;base64,AAH/"
        r = b.request("httpbin", "POST", "/anything/t", body="plain text")
        assert json.loads(r["body"])["data"] == "plain text"
    no_secret(env.audit_text)
    assert '"request":"GET /headers"' in env.audit_text


def test_request_refusals(env: Env) -> None:
    with outloop.Broker(env.home, env.acme) as b:
        with pytest.raises(outloop.PolicyDenied) as e:
            b.request("httpbin", "GET", "/anything/x")
        assert "aliases.httpbin.allow" in str(e.value)
        with pytest.raises(outloop.InvalidParameter):
            b.request("httpbin", "GET", "/anything/%2e%2e/bearer")
        with pytest.raises(outloop.UnknownAction):
            b.request("nosuch", "GET", "/x")
    with outloop.Broker(env.home, env.acme, tenant="globex") as b:
        with pytest.raises(outloop.PolicyDenied) as e:
            b.request("httpbin", "GET", "/bearer")
        assert "globex" in str(e.value)
        no_secret(e.value)
    with outloop.Broker(env.home, env.globex) as b:
        with pytest.raises(outloop.PolicyDenied):
            b.request("httpbin", "GET", "/bearer")
    lib = outloop.library()
    import ctypes

    with outloop.Broker(env.home, env.acme) as b:
        out, n = ctypes.c_void_p(), ctypes.c_size_t()
        for bad in (b"{oops", b'{"alias":"httpbin"}', b'{"alias":"httpbin","method":"GET","path":"/bearer","x":1}'):
            status = lib.outloop_alias_request(b._h(), bad, len(bad), None, 0,
                                               ctypes.byref(out), ctypes.byref(n))
            with pytest.raises(outloop.InvalidJson):
                outloop._check(lib, status)
            assert out.value is None, "out-parameter written on failure"
        status = lib.outloop_alias_request(b._h(), None, 0, None, 0, ctypes.byref(out), ctypes.byref(n))
        with pytest.raises(outloop.NullParameter, match="request_json"):
            outloop._check(lib, status)
    status = lib.outloop_alias_request(None, b"{}", 2, None, 0, None, None)
    with pytest.raises(outloop.NullParameter, match="broker"):
        outloop._check(lib, status)


def test_audit_verifies_and_holds_no_secret(env: Env) -> None:
    with outloop.Broker(env.home, env.acme) as b:
        with pytest.raises(outloop.PolicyDenied):
            b.call("echo.delete")
        assert b.verify_audit() >= 1
    no_secret(env.audit_text)
    assert '"decision":"deny"' in env.audit_text


def test_open_errors_and_close(env: Env) -> None:
    with pytest.raises(outloop.UsageError):
        outloop.Broker("relative/home", env.acme)
    with pytest.raises(outloop.OutloopError):
        outloop.Broker(env.root / "no-home", env.acme)
    b = outloop.Broker(env.home, env.acme)
    b.close()
    b.close()
    assert b.closed
    with pytest.raises(ValueError):
        b.actions()


def test_threads_share_a_broker(env: Env) -> None:
    results: list = []
    with outloop.Broker(env.home, env.acme) as b:
        def work() -> None:
            results.append(b.call("echo.bearer")["status"])

        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert results == [200] * 4

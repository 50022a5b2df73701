"""The alias proxy (`outloop proxy`) driven by an unmodified HTTP client library (httpx) through
its base-URL setting, against the real httpbin and a loopback server-sent-events upstream.

Needs OUTLOOP_BIN (the built `outloop`) and OUTLOOP_TEST_HTTPBIN (a running httpbin); run by
scripts/test-proxy.sh. Every secret is a synthetic FAKE value, passed on stdin only, and every
test checks that it does not come back.
"""

import http.server
import json
import os
import re
import subprocess
import threading

import httpx
import pytest

BIN = os.environ["OUTLOOP_BIN"]
HTTPBIN = os.environ["OUTLOOP_TEST_HTTPBIN"]
SECRET = "FAKE-proxy-acme-token-7c41d9"
SECRETS = [SECRET, "FAKE-proxy-agent-token", "FAKE-agent-cookie"]


class Upstream(http.server.ThreadingHTTPServer):
    """A loopback upstream. `/events` sends one server-sent event, then waits until the test
    sets `release`, then sends a second event that carries the credential it received.
    Anything else answers 200 `ok`. `hits` counts requests that reached it."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.hits = 0
        self.release = threading.Event()
        self.first_sent = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        server.hits += 1
        if self.path.startswith("/events"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b"data: event-1\n\n")
            server.first_sent.set()
            server.release.wait(timeout=30)
            auth = self.headers.get("Authorization", "")
            self._chunk(f"data: {auth}\n\n".encode())
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def ol(home, *args, cwd=None, stdin=None):
    return subprocess.run(
        [BIN, *args],
        env={**os.environ, "OUTLOOP_HOME": str(home)},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxy")
    home, acme, globex = tmp / "home", tmp / "acme", tmp / "globex"
    acme.mkdir()
    globex.mkdir()
    upstream = Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    up = f"http://127.0.0.1:{upstream.server_address[1]}"
    ol(home, "init")
    ol(home, "tenant", "add", "acme")
    ol(home, "tenant", "add", "globex")
    ol(home, "bind", str(acme), "acme")
    ol(home, "bind", str(globex), "globex")
    ol(home, "secret", "set", "vault://acme/echo", "--tenant", "acme", "--credential", "echo",
       stdin=SECRET)
    cfg = home / "config.toml"
    text = cfg.read_text().replace("allow_private = []", 'allow_private = ["127.0.0.0/8"]')
    text += f"""
[aliases.httpbin]
credential = "echo"
base_url = "{HTTPBIN}"
auth = {{ type = "bearer" }}
allow = ["GET /bearer", "GET /headers", "GET /anything/**", "POST /anything/**"]

[aliases.events]
credential = "echo"
base_url = "{up}"
auth = {{ type = "bearer" }}
allow = ["GET /events", "GET /ok"]

[policy.tenants.acme]
allow = ["alias:*"]

[policy.tenants.globex]
allow = ["alias:httpbin"]
"""
    cfg.write_text(text)
    proc = subprocess.Popen(
        [BIN, "proxy", "--port", "0"],
        env={**os.environ, "OUTLOOP_HOME": str(home)},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    # The readiness line, not a sleep: the proxy prints it once it accepts connections.
    line = proc.stderr.readline()
    m = re.search(r"ready on (http://127\.0\.0\.1:\d+)", line)
    assert m, line
    url = lambda alias, cwd=acme: ol(home, "proxy", "url", alias, cwd=cwd).stdout.strip()
    yield {
        "home": home, "acme": acme, "globex": globex, "proxy": m.group(1),
        "url": url, "upstream": upstream,
    }
    proc.terminate()
    proc.wait(timeout=10)
    upstream.shutdown()


def no_leak(text):
    for s in SECRETS:
        assert s not in text, f"{s} leaked"


def test_url_names_the_workspace_with_its_token(env):
    base = env["url"]("httpbin")
    assert re.fullmatch(re.escape(env["proxy"]) + r"/olp_[A-Za-z0-9_-]{43}/httpbin", base), base
    # Another workspace gets another token; an unbound directory gets none.
    assert env["url"]("httpbin", cwd=env["globex"]) != base
    r = subprocess.run([BIN, "proxy", "url", "httpbin"], cwd="/",
                       env={**os.environ, "OUTLOOP_HOME": str(env["home"])},
                       capture_output=True, text=True)
    assert r.returncode != 0 and "outloop:" in r.stderr
    r = subprocess.run([BIN, "proxy", "url", "nosuch"], cwd=env["acme"],
                       env={**os.environ, "OUTLOOP_HOME": str(env["home"])},
                       capture_output=True, text=True)
    assert r.returncode == 2 and "nosuch" in r.stderr


def test_httpbin_bearer_and_headers_come_back_redacted(env):
    with httpx.Client(base_url=env["url"]("httpbin"), timeout=30) as client:
        r = client.get("/bearer", headers={"Authorization": "Bearer FAKE-proxy-agent-token"})
        assert r.status_code == 200, r.text
        assert r.json() == {"authenticated": True, "token": "[REDACTED:echo]"}
        no_leak(r.text)
        r = client.get("/headers", headers={
            "Authorization": "Bearer FAKE-proxy-agent-token",
            "Cookie": "session=FAKE-agent-cookie",
            "Proxy-Authorization": "Basic FAKE-agent-cookie",
            "X-Agent": "visible",
        })
        assert r.status_code == 200, r.text
        headers = r.json()["headers"]
        assert headers["Authorization"] == "Bearer [REDACTED:echo]"
        assert headers["X-Agent"] == "visible"
        for dropped in ("Cookie", "Proxy-Authorization", "X-Outloop-Token"):
            assert dropped not in headers, headers
        no_leak(r.text)
        no_leak(str(r.headers))


def test_query_and_json_body_pass_through_without_the_token(env):
    base = env["url"]("httpbin")
    token = base.split("/")[-2]
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post("/anything/items", params={"page": "2", "q": "a b"},
                        json={"name": "widget"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["args"] == {"page": "2", "q": "a b"}
        assert body["json"] == {"name": "widget"}
        assert body["method"] == "POST"
        assert body["url"].endswith("/anything/items?page=2&q=a+b"), body["url"]
        assert token not in r.text
        no_leak(r.text)


def test_token_in_a_header_works_too(env):
    base = env["url"]("httpbin")
    token = base.split("/")[-2]
    r = httpx.get(env["proxy"] + "/httpbin/bearer", headers={"X-Outloop-Token": token},
                  timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["token"] == "[REDACTED:echo]"


def test_server_sent_events_stream_without_added_wait(env):
    up = env["upstream"]
    up.release.clear()
    with httpx.Client(base_url=env["url"]("events"), timeout=30) as client:
        with client.stream("GET", "/events") as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/event-stream"
            chunks = r.iter_raw()
            got = b""
            while b"event-1\n\n" not in got:
                got += next(chunks)
            # Event 1 arrived while the upstream still holds event 2: nothing waited for it.
            assert not up.release.is_set()
            assert got == b"data: event-1\n\n"
            up.release.set()
            rest = b"".join(chunks)
    assert rest == b"data: Bearer [REDACTED:echo]\n\n", rest
    no_leak(rest.decode())


def test_wrong_or_missing_token_is_refused_and_nothing_is_sent(env):
    up = env["upstream"]
    base = env["url"]("events")
    token = base.split("/")[-2]
    before = up.hits
    assert httpx.get(base + "/ok", timeout=30).status_code == 200
    assert up.hits == before + 1
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    cases = [
        (env["proxy"] + "/events/ok", {}, 401),
        (env["proxy"] + "/events/ok", {"X-Outloop-Token": forged}, 403),
        (env["proxy"] + f"/{forged}/events/ok", {}, 403),
        (env["proxy"] + "/olp_/events/ok", {}, 403),
    ]
    for url, headers, status in cases:
        r = httpx.get(url, headers=headers, timeout=30)
        assert r.status_code == status, (url, r.text)
        assert r.json()["error"]["kind"] == "policy_denied"
    assert up.hits == before + 1


def test_wrong_alias_denied_path_and_other_tenant(env):
    up = env["upstream"]
    before = up.hits
    base = env["url"]("events")
    prefix = base.rsplit("/", 1)[0]
    r = httpx.get(prefix + "/nosuch/ok", timeout=30)
    assert r.status_code == 404 and r.json()["error"]["kind"] == "unknown_action"
    r = httpx.get(base + "/admin", timeout=30)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["kind"] == "policy_denied"
    assert "aliases.events.allow" in r.json()["error"]["message"]
    r = httpx.post(base + "/ok", timeout=30)
    assert r.status_code == 403, r.text
    # globex's workspace token: its tenant may not use alias `events`.
    other = env["url"]("events", cwd=env["globex"])
    r = httpx.get(other + "/ok", timeout=30)
    assert r.status_code == 403, r.text
    # Paths that would leave the base URL; httpx would normalize `..`, so send raw targets.
    for raw in ["/%2e%2e/admin", "/a/..%2fadmin", "//evil.example/x"]:
        r = httpx.get(base + raw, timeout=30)
        assert r.status_code in (400, 403), (raw, r.text)
    assert up.hits == before


def test_audit_records_alias_requests_without_query_token_or_secret(env):
    out = ol(env["home"], "audit", "tail", "-n", "100", "--json").stdout
    no_leak(out)
    assert "olp_" not in out
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    alias = [r for r in records if r["action"].startswith("alias:")]
    assert any(r.get("request") == "GET /bearer" and r["outcome"] == "ok" for r in alias), alias
    assert any(r["decision"] == "deny" and r.get("request") == "GET /admin" for r in alias)
    assert "page=2" not in out and "widget" not in out

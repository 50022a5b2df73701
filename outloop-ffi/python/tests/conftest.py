"""Test setup: a scratch Outloop home made with the real ``outloop`` binary, two tenants bound
to their workspaces, FAKE secrets in the vault, and actions against the real httpbin
(``$OUTLOOP_TEST_HTTPBIN``, started by scripts/test-ffi.sh)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[3]
ACME_SECRET = "FAKE-py-acme-echo-token-8c1f2e"
GLOBEX_SECRET = "FAKE-py-globex-echo-token-4d9a7b"


@dataclass
class Env:
    root: Path
    home: Path
    acme: Path
    globex: Path
    unbound: Path
    httpbin: str

    @property
    def audit_text(self) -> str:
        p = self.home / "audit.jsonl"
        return p.read_text() if p.exists() else ""


def _outloop(home: Path, *args: str, stdin: str = "") -> None:
    binary = os.environ.get("OUTLOOP_BIN") or str(REPO / "target" / "debug" / "outloop")
    env = {k: v for k, v in os.environ.items() if k.lower() != "http_proxy"}
    env["OUTLOOP_HOME"] = str(home)
    r = subprocess.run([binary, *args], input=stdin, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"outloop {args[0]} failed: {r.stderr}"


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    httpbin = os.environ.get("OUTLOOP_TEST_HTTPBIN")
    assert httpbin, "OUTLOOP_TEST_HTTPBIN is not set: run scripts/test-ffi.sh, which starts httpbin"
    root = tmp_path_factory.mktemp("outloop").resolve()
    e = Env(root, root / "home", root / "clients/acme", root / "clients/globex",
            root / "elsewhere", httpbin)
    for d in (e.acme, e.globex, e.unbound):
        d.mkdir(parents=True)
    _outloop(e.home, "init")
    for t, ws, secret in (("acme", e.acme, ACME_SECRET), ("globex", e.globex, GLOBEX_SECRET)):
        _outloop(e.home, "tenant", "add", t)
        _outloop(e.home, "bind", str(ws), t)
        # The value goes in on stdin, never in argv.
        _outloop(e.home, "secret", "set", f"vault://{t}/echo", "--tenant", t,
                 "--credential", "echo", stdin=secret)
    cfg = e.home / "config.toml"
    text = cfg.read_text().replace("allow_private = []", 'allow_private = ["127.0.0.0/8"]')
    text += f'''
[actions."echo.bearer"]
description = "httpbin echoes the bearer token it received"
credential = "echo"
method = "GET"
url = "{httpbin}/bearer"
auth = {{ type = "bearer" }}

[actions."echo.anything"]
description = "httpbin echoes the request, query included"
credential = "echo"
method = "GET"
url = "{httpbin}/anything"
query = {{ q = "{{q}}" }}
auth = {{ type = "header", name = "X-Api-Key" }}
[actions."echo.anything".params]
q = {{ type = "string", pattern = "^[a-z0-9-]+$" }}

[actions."echo.delete"]
description = "never allowed"
credential = "echo"
method = "DELETE"
url = "{httpbin}/delete"
auth = {{ type = "bearer" }}

[aliases.httpbin]
description = "httpbin below its root"
credential = "echo"
base_url = "{httpbin}"
auth = {{ type = "bearer" }}
allow = ["GET /bearer", "GET /headers", "POST /anything/**"]

[policy.tenants.acme]
allow = ["echo.bearer", "echo.anything", "alias:httpbin"]
[policy.tenants.globex]
allow = ["echo.bearer"]
'''
    cfg.write_text(text)
    yield e

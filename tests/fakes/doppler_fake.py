#!/usr/bin/env python3
"""A loopback fake of Doppler's REST API v3, standard library only.

It follows Doppler's documented requests and responses:

- auth: "Authorization: Bearer <token>" (docs.doppler.com/reference/api; DopplerHQ/cli
  pkg/http/api.go) or HTTP Basic with the token as user and an empty password (older docs,
  DopplerHQ/secrets-fetch-action doppler.js);
- a service token (dp.st.) is bound to one project and config, which may then be omitted or
  sent empty, as Doppler's CLI v3.77 sends them (python-sdk services/secrets.py: "Not required
  if using a Service Token"); personal (dp.pt.), CLI (dp.ct.) and service-account (dp.sa.)
  tokens must name both;
- GET /v3/configs/config/secret?project&config&name
  -> {"success":true,"name":N,"value":{"raw","computed","note","rawVisibility",
      "computedVisibility","rawValueType","computedValueType"}}, no "secret" wrapper
  (DopplerHQ/python-sdk models/SecretsGet200Response.py); raw/computed null when restricted
  (DopplerHQ/cli pkg/models/api.go uses *string);
- GET /v3/configs/config/secrets?project&config[&secrets=A,B][&include_dynamic_secrets=]
  -> {"secrets":{NAME:{...}},"success":true}, including Doppler's DOPPLER_PROJECT,
  DOPPLER_CONFIG and DOPPLER_ENVIRONMENT metadata keys (what `doppler secrets` shows);
- GET /v3/configs/config/secrets/download?format=json -> a flat {NAME: computed} object, the
  same metadata keys included (DopplerHQ/cli pkg/http/api.go DownloadSecrets);
- GET /v3/me ("Retrieve token info", what `doppler me` calls)
  -> {"workplace":{"name","slug"},"type","token_preview","slug","created_at","name",
      "last_seen_at"} (DopplerHQ/cli pkg/models/api.go ActorInfo, pkg/http/api.go GetActorInfo);
- errors: {"messages":["..."],"success":false} (DopplerHQ/cli pkg/http/http.go errorResponse)
  with 400, 401 ("Invalid token", as in Doppler's own tests), 403, 404 and 429. Doppler's
  message wording beyond "Invalid token" is not documented; these texts are the fake's own.
  Whether Doppler sends Retry-After on 429 is not documented either; this fake sends it so
  clients that honour it can be tested.

Usage: doppler_fake.py SEED.json; prints its base URL on the first stdout line when listening.
SEED.json: {"tokens": {"dp.st.dev.X": {"project": "web", "config": "dev"},
                       "dp.pt.Y": {"denied_projects": ["other"]}},
            "projects": {"web": {"dev": {"environment": "dev",
                                         "secrets": {"NAME": "value" |
                                                     {"raw": r, "computed": c} |
                                                     {"restricted": true}}}}}}
Test controls under /__fake/: POST /__fake/ratelimit?n=N&after=S answers the next N calls with
429 and Retry-After S; GET /__fake/stats returns counters and the last query seen.
"""

import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    server_version = "doppler-fake"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def fail(self, status, message, headers=()):
        self.send_json(status, {"messages": [message], "success": False}, headers)

    def do_POST(self):
        url = urlsplit(self.path)
        srv = self.server
        if url.path == "/__fake/ratelimit":
            q = parse_qs(url.query)
            with srv.lock:
                srv.ratelimit = int(q.get("n", ["1"])[0])
                srv.ratelimit_after = int(q.get("after", ["7"])[0])
            return self.send_json(200, {"ok": True})
        self.fail(404, "Not found")

    def token(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer "):]
        if auth.startswith("Basic "):
            try:
                user, _, _ = base64.b64decode(auth[len("Basic "):]).decode().partition(":")
                return user
            except ValueError:
                return None
        return None

    def do_GET(self):
        url = urlsplit(self.path)
        srv = self.server
        q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if url.path == "/__fake/stats":
            with srv.lock:
                return self.send_json(200, dict(srv.stats, last_query=srv.last_query))
        routes = {"/v3/me": None,
                  "/v3/configs/config/secret": self.one,
                  "/v3/configs/config/secrets": self.many,
                  "/v3/configs/config/secrets/download": self.download}
        if url.path not in routes:
            return self.fail(404, "Not found")
        handler = routes[url.path]
        with srv.lock:
            srv.stats["requests"] += 1
            srv.last_query = q
            limited = srv.ratelimit > 0
            if limited:
                srv.ratelimit -= 1
                srv.stats["rate_limited"] += 1
        if limited:
            return self.fail(429, "Too many requests", [("Retry-After", str(srv.ratelimit_after))])
        token = self.token()
        grant = srv.seed["tokens"].get(token) if token else None
        if grant is None:
            return self.fail(401, "Invalid token")
        if url.path == "/v3/me":
            return self.me(token)
        project, config = q.get("project", ""), q.get("config", "")
        if token.startswith("dp.st."):
            if (project and project != grant["project"]) or (config and config != grant["config"]):
                return self.fail(403, "This token does not have access to the requested config")
            project, config = grant["project"], grant["config"]
        else:
            if not project:
                return self.fail(400, "You must specify a project")
            if not config:
                return self.fail(400, "You must specify a config")
            if project in grant.get("denied_projects", []):
                return self.fail(403, "You do not have access to the requested project")
        proj = srv.seed["projects"].get(project)
        if proj is None:
            return self.fail(404, "Could not find requested project")
        cfg = proj.get(config)
        if cfg is None:
            return self.fail(404, "Could not find requested config")
        secrets = dict(cfg["secrets"])
        secrets.update({"DOPPLER_PROJECT": project, "DOPPLER_CONFIG": config,
                        "DOPPLER_ENVIRONMENT": cfg.get("environment", config)})
        handler(q, secrets)

    def me(self, token):
        kind = {"dp.st.": "service_token", "dp.pt.": "personal", "dp.ct.": "cli",
                "dp.sa.": "service_account"}.get(token[:6], "unknown")
        self.send_json(200, {"workplace": {"name": "FAKE Workplace", "slug": "fake-workplace"},
                             "type": kind, "token_preview": token[:6] + "...",
                             "slug": "fake-token-slug", "created_at": "2026-11-30T06:00:00.000Z",
                             "name": "FAKE token", "last_seen_at": "2026-11-30T06:00:00.000Z"})

    @staticmethod
    def value_obj(v):
        if isinstance(v, dict) and v.get("restricted"):
            raw = computed = None
            vis = "restricted"
        elif isinstance(v, dict):
            raw, computed, vis = v["raw"], v["computed"], "masked"
        else:
            raw = computed = v
            vis = "masked"
        return {"raw": raw, "computed": computed, "note": "", "rawVisibility": vis,
                "computedVisibility": vis, "rawValueType": {"type": "string"},
                "computedValueType": {"type": "string"}}

    def one(self, q, secrets):
        name = q.get("name", "")
        if name not in secrets:
            return self.fail(404, "Could not find requested secret")
        self.send_json(200, {"success": True, "name": name, "value": self.value_obj(secrets[name])})

    def many(self, q, secrets):
        wanted = [s for s in q.get("secrets", "").split(",") if s]
        out = {k: self.value_obj(v) for k, v in secrets.items() if not wanted or k in wanted}
        self.send_json(200, {"secrets": out, "success": True})

    def download(self, q, secrets):
        if q.get("format", "json") != "json":
            return self.fail(400, "This fake serves format=json only")
        wanted = [s for s in q.get("secrets", "").split(",") if s]
        out = {k: self.value_obj(v)["computed"] for k, v in secrets.items()
               if not wanted or k in wanted}
        self.send_json(200, out)


def main():
    seed = json.load(open(sys.argv[1], encoding="utf-8"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.seed = seed
    server.lock = threading.Lock()
    server.ratelimit = 0
    server.ratelimit_after = 0
    server.stats = {"requests": 0, "rate_limited": 0}
    server.last_query = {}
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

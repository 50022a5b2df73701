#!/usr/bin/env python3
"""A loopback fake of Infisical's REST API, standard library only.

It follows, request for request and body for body, what Infisical documents and ships:

- Universal Auth login, POST /api/v1/auth/universal-auth/login with {"clientId","clientSecret"}
  -> {"accessToken","expiresIn","accessTokenMaxTTL","tokenType":"Bearer"}
  (infisical.com/docs/documentation/platform/identities/universal-auth;
  Infisical/infisical backend/src/server/routes/v1/identity-universal-auth-router.ts)
- one secret, GET /api/v4/secrets/{secretName}?projectId&environment&secretPath[&type&viewSecretValue]
  (infisical.com/docs/api-reference/endpoints/secrets/read; routes/v4/secret-router.ts)
  and the deprecated GET /api/v3/secrets/raw/{secretName}?workspaceId&environment&secretPath
  (infisical.com/docs/api-reference/endpoints/deprecated/secrets/read.md; routes/v3/secret-router.ts),
  both answering {"secret": {...}} with the fields the official SDKs read (id, _id, workspace,
  environment, version, type, secretKey, secretValue, secretComment, secretValueHidden, ...)
- listing, GET /api/v4/secrets and GET /api/v3/secrets/raw -> {"secrets": [...], "imports": []}
- a value the identity may see but not read: HTTP 200 with "secretValue": "<hidden-by-infisical>"
  and "secretValueHidden": true (Infisical's HIDDEN_SECRET_VALUE_API_MASK)
- errors as backend/src/server/plugins/error-handler.ts builds them:
  {"reqId","statusCode","message","error"}: 400 BadRequest, 401 UnauthorizedError, 403
  PermissionDenied, 403 TokenError ("Your token has expired. Please re-authenticate."), 404
  NotFound, 429 RateLimitExceeded ("Rate limit exceeded. Please try again in N seconds", with a
  Retry-After header as @fastify/rate-limit sends), and Fastify's own route 404
  ({"message":"Route GET:/x not found","error":"Not Found","statusCode":404}) on a server
  started with --no-v4, like an old self-hosted Infisical.

Usage: infisical_fake.py SEED.json [--no-v4] [--token-ttl SECONDS]
SEED.json: {"clientId": ..., "clientSecret": ...,
            "secrets": [{"project","environment","path","name","value"[, "hidden": true]}],
            "denied_projects": ["p-id", ...]}
It prints its base URL on the first stdout line once it listens (the readiness line).

Test controls live under /__fake/ (no Infisical path starts so): POST /__fake/expire makes every
issued token expired (403 TokenError next use), POST /__fake/ratelimit?n=N&after=S answers the
next N API calls with 429 and Retry-After S, GET /__fake/stats returns request counters.
"""

import base64
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

HIDDEN = "<hidden-by-infisical>"


class State:
    def __init__(self, seed, v4, ttl):
        self.seed = seed
        self.v4 = v4
        self.ttl = ttl
        self.lock = threading.Lock()
        self.tokens = {}  # token -> {"expired": bool}
        self.ratelimit = 0
        self.ratelimit_after = 0
        self.stats = {"logins": 0, "failed_logins": 0, "token_errors": 0, "v4": 0, "v3": 0,
                      "rate_limited": 0, "requests": 0}


def jwt_like():
    # Infisical access tokens are JWTs; this one only has the shape (header.payload.signature).
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return ".".join([part({"alg": "HS256", "typ": "JWT"}),
                     part({"identityId": str(uuid.uuid4()), "authTokenType": "identityAccessToken",
                           "iat": int(time.time())}),
                     "FAKEsig" + uuid.uuid4().hex])


class Handler(BaseHTTPRequestHandler):
    server_version = "infisical-fake"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    @property
    def st(self):
        return self.server.state

    def send_json(self, status, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, name, message, headers=()):
        self.send_json(status, {"reqId": "req-" + uuid.uuid4().hex[:12], "statusCode": status,
                                "message": message, "error": name}, headers)

    def route_404(self):
        # Fastify's default not-found handler.
        self.send_json(404, {"message": f"Route {self.command}:{self.path} not found",
                             "error": "Not Found", "statusCode": 404})

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def rate_limited(self):
        with self.st.lock:
            if self.st.ratelimit > 0:
                self.st.ratelimit -= 1
                self.st.stats["rate_limited"] += 1
                after = self.st.ratelimit_after
            else:
                return False
        self.error(429, "RateLimitExceeded",
                   f"Rate limit exceeded. Please try again in {after} seconds",
                   [("Retry-After", str(after))])
        return True

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path == "/__fake/expire":
            with self.st.lock:
                for t in self.st.tokens.values():
                    t["expired"] = True
            return self.send_json(200, {"ok": True})
        if url.path == "/__fake/ratelimit":
            q = parse_qs(url.query)
            with self.st.lock:
                self.st.ratelimit = int(q.get("n", ["1"])[0])
                self.st.ratelimit_after = int(q.get("after", ["7"])[0])
            return self.send_json(200, {"ok": True})
        if url.path != "/api/v1/auth/universal-auth/login":
            return self.route_404()
        with self.st.lock:
            self.st.stats["requests"] += 1
        body = self.body_json()
        if self.rate_limited():
            return
        if not isinstance(body, dict) or "clientId" not in body or "clientSecret" not in body:
            return self.error(400, "BadRequest", "Invalid request body")
        with self.st.lock:
            self.st.stats["logins"] += 1
        if body["clientId"] != self.st.seed["clientId"] or body["clientSecret"] != self.st.seed["clientSecret"]:
            with self.st.lock:
                self.st.stats["failed_logins"] += 1
            return self.error(401, "UnauthorizedError", "Invalid credentials")
        token = jwt_like()
        with self.st.lock:
            self.st.tokens[token] = {"expired": False}
        self.send_json(200, {"accessToken": token, "expiresIn": self.st.ttl,
                             "accessTokenMaxTTL": self.st.ttl, "tokenType": "Bearer"})

    def authorize(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            self.error(401, "UnauthorizedError", "Missing Authorization header")
            return False
        with self.st.lock:
            tok = self.st.tokens.get(auth[len("Bearer "):])
            if tok is not None and tok["expired"]:
                self.st.stats["token_errors"] += 1
        if tok is None:
            # A JWT that does not verify is a TokenError too (error-handler.ts maps
            # JsonWebTokenError there); a bearer that is no JWT at all is unauthorized.
            if auth.count(".") == 2:
                self.error(403, "TokenError", "Invalid token")
            else:
                self.error(401, "UnauthorizedError", "Invalid token")
            return False
        if tok["expired"]:
            self.error(403, "TokenError", "Your token has expired. Please re-authenticate.")
            return False
        return True

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/__fake/stats":
            with self.st.lock:
                return self.send_json(200, dict(self.st.stats))
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if parts[:3] == ["api", "v4", "secrets"] and len(parts) in (3, 4) and self.st.v4:
            version, project = "v4", q.get("projectId") or q.get("workspaceId")
        elif parts[:4] == ["api", "v3", "secrets", "raw"] and len(parts) in (4, 5):
            version, project = "v3", q.get("workspaceId")
        else:
            return self.route_404()
        with self.st.lock:
            self.st.stats["requests"] += 1
            self.st.stats[version] += 1
        if self.rate_limited() or not self.authorize():
            return
        prefix = 3 if version == "v4" else 4
        name = parts[prefix] if len(parts) == prefix + 1 else None
        if not project:
            return self.error(400, "BadRequest", "You must provide workspaceId")
        env = q.get("environment")
        if not env:
            return self.error(400, "BadRequest", "Missing environment")
        path = q.get("secretPath", "/")
        if len(path) > 1:
            path = path.rstrip("/")
        if project in self.st.seed.get("denied_projects", []):
            return self.error(403, "PermissionDenied",
                              "You are not allowed to readValue on secrets")
        view = q.get("viewSecretValue", "true") != "false"
        matches = [s for s in self.st.seed["secrets"]
                   if s["project"] == project and s["environment"] == env and s["path"] == path]
        if name is None:
            return self.send_json(200, {"secrets": [self.secret_obj(s, view) for s in matches],
                                        "imports": []})
        for s in matches:
            if s["name"] == name:
                return self.send_json(200, {"secret": self.secret_obj(s, view)})
        self.error(404, "NotFound",
                   f"Secret with name '{name}' not found")

    def secret_obj(self, s, view):
        hidden = bool(s.get("hidden")) or not view
        now = "2026-11-30T06:00:00.000Z"
        sid = str(uuid.uuid5(uuid.NAMESPACE_URL, s["project"] + s["environment"] + s["path"] + s["name"]))
        return {
            "id": sid, "_id": sid, "workspace": s["project"], "environment": s["environment"],
            "version": 1, "type": "shared", "secretKey": s["name"],
            "secretValue": HIDDEN if hidden else s["value"], "secretValueHidden": hidden,
            "secretComment": "", "secretReminderNote": None, "secretReminderRepeatDays": None,
            "skipMultilineEncoding": False, "createdAt": now, "updatedAt": now,
            "actor": None, "isRotatedSecret": False, "rotationId": None,
            "secretPath": s["path"], "tags": [], "secretMetadata": [],
        }


def main():
    args = sys.argv[1:]
    seed = json.load(open(args[0], encoding="utf-8"))
    ttl = 2592000
    if "--token-ttl" in args:
        ttl = int(args[args.index("--token-ttl") + 1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State(seed, "--no-v4" not in args, ttl)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

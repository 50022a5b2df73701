#!/usr/bin/env python3
"""A fake `op` (1Password CLI v2) for tests, standard library only.

It reproduces what op 2.x prints for the commands Outloop runs:

- `op [--account A] read [-n|--no-newline] <op://vault/item/[section/]field[?attribute=otp]>`:
  the raw field value on stdout, followed by "\\n" unless --no-newline
  (developer.1password.com/docs/cli/reference/commands/read); references follow
  developer.1password.com/docs/cli/secret-reference-syntax: case-insensitive names or IDs,
  only A-Z a-z 0-9 - _ . and space, at most 4 segments;
- `op [--account A] item get <item> --vault <v> --format json`: the item JSON in the CLI's
  snake_case shape (1Password/op-js src/index.ts types; `op item get --help`);
- `op --version`: the version alone on one line, e.g. "2.30.0";
- `op [--account A] whoami [--format json]`: the active account or service account, or an
  error when none is authenticated ("Returns the currently active account or service account.
  The command returns an error if no accounts are currently authenticated.",
  developer.1password.com/docs/cli/reference/commands/whoami); JSON keys `url`, `email`,
  `user_uuid`, `account_uuid` (1Password/op-js src/index.ts) and `user_type` ("HUMAN" or
  "SERVICE_ACCOUNT"); see /work/shared/reference/backends.md section 1.5. The fake checks
  auth exactly as for reads;
- errors: exit status 1 and one stderr line `[ERROR] YYYY/MM/DD HH:MM:SS <message>`
  (format parsed by 1Password/op-js src/cli.ts), with the messages op 2.32-2.39 prints for a
  missing item, vault or field, not signed in, a bad service-account token (401 and
  DecodeSACredentials), and a reference syntax error, as quoted in public test fixtures.
  1Password does not document the exact text of its throttling error; this fake prints a
  "(429) Too Many Requests" line in the style of its "(401)"/"(403)" errors.

Auth: with OP_SERVICE_ACCOUNT_TOKEN set, the token must equal the database's
"service_account_token"; without it, "desktop_signed_in" must be true (desktop-app mode).

Files: the JSON database is $OP_FAKE_DB, else `op-db.json` beside this script; each run
appends one JSON line to $OP_FAKE_RECORD, else to `op-record.jsonl` beside this script: argv, what fd 0 is, the OP_* environment, the names of
all environment variables and the parent process's name. "mode" in the database may be
"throttle" (every call answers 429) or "hang" (sleep, for timeout tests).
"""

import json
import os
import sys
import time

ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_. ")


def fail(message):
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    sys.stderr.write(f"[ERROR] {stamp} {message}\n")
    sys.exit(1)


def record(argv):
    path = os.environ.get("OP_FAKE_RECORD") or beside("op-record.jsonl")
    try:
        stdin = os.readlink("/proc/self/fd/0")
    except OSError:
        stdin = "closed"
    try:
        with open(f"/proc/{os.getppid()}/comm", encoding="utf-8") as f:
            parent = f.read().strip()
    except OSError:
        parent = "?"
    rec = {"argv": argv, "stdin": stdin,
           "op_env": {k: v for k, v in os.environ.items() if k.startswith("OP_")},
           "env_names": sorted(os.environ), "parent": parent}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def beside(name):
    return os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), name)


def same(a, b):
    return a.lower() == b.lower()


def find_vault(db, name):
    for v in db["vaults"]:
        if same(v["id"], name) or same(v["name"], name):
            return v
    return None


def find_item(vault, name):
    for it in vault["items"]:
        if same(it["id"], name) or same(it["title"], name):
            return it
    return None


def authenticate(db, prefix):
    token = os.environ.get("OP_SERVICE_ACCOUNT_TOKEN")
    if token is not None:
        if not token.startswith("ops_"):
            fail(prefix + "error initializing client: Validation: (failed to "
                 "session.DecodeSACredentials), Server: (illegal base64 data at input byte 12)")
        if token != db.get("service_account_token"):
            fail(prefix + "(401) Unauthorized: invalid bearer token")
    elif not db.get("desktop_signed_in"):
        fail(prefix + "error initializing client: You are not currently signed in. "
             "Please run `op signin --help` for instructions")
    if db.get("mode") == "throttle":
        fail(prefix + "(429) Too Many Requests: You've reached the maximum number of requests "
             "for this service account. Please try again later.")
    if db.get("mode") == "hang":
        time.sleep(60)


def cmd_read(db, args):
    newline = True
    refs = []
    for a in args:
        if a in ("-n", "--no-newline"):
            newline = False
        elif a.startswith("-"):
            fail(f"unknown flag: {a}")
        else:
            refs.append(a)
    if len(refs) != 1:
        fail("expected exactly one secret reference")
    ref = refs[0]
    prefix = f"could not read secret '{ref}': "
    if not ref.startswith("op://"):
        fail(f"invalid secret reference '{ref}': secret reference must start with op://")
    body, _, query = ref[len("op://"):].partition("?")
    parts = body.split("/")
    if len(parts) > 4:
        fail(f"invalid secret reference '{ref}': too many '/': secret references should match "
             "op://<vault>/<item>[/<section>]/<field>")
    if len(parts) < 3 or any(p == "" for p in parts):
        fail(f"invalid secret reference '{ref}': secret references should match "
             "op://<vault>/<item>[/<section>]/<field>")
    for p in parts:
        for ch in p:
            if ch not in ALLOWED:
                fail(f"invalid secret reference '{ref}': invalid character in secret reference: '{ch}'")
    authenticate(db, prefix)
    vname, iname = parts[0], parts[1]
    section, fname = (parts[2], parts[3]) if len(parts) == 4 else (None, parts[2])
    vault = find_vault(db, vname)
    if vault is None:
        fail(prefix + f'"{vname}" isn\'t a vault in this account')
    item = find_item(vault, iname)
    if item is None:
        fail(prefix + f'could not get item {vname}/{iname}: "{iname}" isn\'t an item in the '
             f'"{vname}" vault. Specify the item with its UUID, name, or domain.')
    field = None
    for f in item["fields"]:
        sec = f.get("section")
        if section is not None and (sec is None or not (same(sec["id"], section) or same(sec.get("label", ""), section))):
            continue
        if same(f["id"], fname) or same(f.get("label", ""), fname):
            field = f
            break
    if field is None:
        fail(prefix + f"item '{vname}/{iname}' does not have a field '{fname}'")
    attrs = dict(kv.partition("=")[::2] for kv in query.split("&") if kv)
    value = field["value"]
    if attrs.get("attribute") == "otp":
        value = field.get("totp", "")
    sys.stdout.buffer.write(value.encode("utf-8") + (b"\n" if newline else b""))


def cmd_item_get(db, args):
    vault_name = None
    fmt = None
    pos = []
    i = 0
    rest_positional = False
    while i < len(args):
        a = args[i]
        if rest_positional:
            pos.append(a)
        elif a == "--":
            rest_positional = True
        elif a.startswith("--vault="):
            vault_name = a[len("--vault="):]
        elif a == "--vault":
            i += 1
            vault_name = args[i]
        elif a.startswith("--format="):
            fmt = a[len("--format="):]
        elif a == "--format":
            i += 1
            fmt = args[i]
        elif a.startswith("-"):
            fail(f"unknown flag: {a}")
        else:
            pos.append(a)
        i += 1
    if len(pos) != 1:
        fail("expected exactly one item")
    authenticate(db, "")
    if os.environ.get("OP_SERVICE_ACCOUNT_TOKEN") and vault_name is None:
        fail("a vault is required when using a service account: use --vault")
    vault = find_vault(db, vault_name) if vault_name else None
    if vault_name and vault is None:
        fail(f'"{vault_name}" isn\'t a vault in this account')
    item = find_item(vault, pos[0]) if vault else None
    if item is None:
        fail(f'"{pos[0]}" isn\'t an item in the "{vault_name}" vault. Specify the item with its '
             "UUID, name, or domain.")
    if fmt != "json":
        fail("this fake prints --format json only")
    sections = []
    for f in item["fields"]:
        if f.get("section") and f["section"] not in sections:
            sections.append(f["section"])
    out = {
        "id": item["id"], "title": item["title"], "version": 1,
        "vault": {"id": vault["id"], "name": vault["name"]},
        "category": "API_CREDENTIAL", "last_edited_by": "FAKEUSER",
        "created_at": "2026-11-30T06:00:00Z", "updated_at": "2026-11-30T06:00:00Z",
        "sections": sections,
        "fields": [],
    }
    for f in item["fields"]:
        fo = {"id": f["id"], "type": f.get("type", "CONCEALED"), "label": f.get("label", f["id"]),
              "value": f["value"]}
        if f.get("section"):
            fo["section"] = f["section"]
        if "totp" in f:
            fo["totp"] = f["totp"]
        out["fields"].append(fo)
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


def cmd_whoami(db, args):
    if args in ([], ["--format=human"], ["--format", "human"]):
        fmt = "human"
    elif args in (["--format=json"], ["--format", "json"]):
        fmt = "json"
    else:
        fail(f"unknown flag: {args[0]}")
    authenticate(db, "")
    service = os.environ.get("OP_SERVICE_ACCOUNT_TOKEN") is not None
    who = {"url": "https://fake.1password.com", "email": "" if service else "fake@example.com",
           "user_uuid": "FAKEUSERUUID0000000000000", "account_uuid": "FAKEACCOUNTUUID0000000000",
           "user_type": "SERVICE_ACCOUNT" if service else "HUMAN"}
    if fmt == "json":
        sys.stdout.write(json.dumps(who, indent=2) + "\n")
    else:
        sys.stdout.write(f"URL:        {who['url']}\nEmail:      {who['email']}\n"
                         f"User ID:    {who['user_uuid']}\nUser Type:  {who['user_type']}\n")


def main():
    argv = sys.argv[1:]
    record(argv)
    with open(os.environ.get("OP_FAKE_DB") or beside("op-db.json"), encoding="utf-8") as f:
        db = json.load(f)
    args = []
    i = 0
    while i < len(argv):
        if argv[i] == "--account":
            i += 2
            continue
        if argv[i].startswith("--account="):
            i += 1
            continue
        args.append(argv[i])
        i += 1
    if args == ["--version"]:
        sys.stdout.write(db.get("version", "2.30.0") + "\n")
    elif args[:1] == ["whoami"]:
        cmd_whoami(db, args[1:])
    elif args[:1] == ["read"]:
        cmd_read(db, args[1:])
    elif args[:2] == ["item", "get"]:
        cmd_item_get(db, args[2:])
    else:
        fail(f"unknown command \"{' '.join(args[:2])}\" for \"op\"")


if __name__ == "__main__":
    main()

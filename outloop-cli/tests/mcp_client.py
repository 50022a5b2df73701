"""Drives `outloop mcp` with the official MCP Python SDK (PyPI `mcp`, pinned in
tests/requirements.txt): a real client nobody here wrote.

Run by the Rust e2e test `e2e::mcp` (outloop-cli/tests/e2e/mcp.rs), which prepares an
OUTLOOP_HOME with a bound workspace and httpbin actions, and passes:

  MCP_ENTRY        the server entry `outloop init --agent claude-code` wrote to .mcp.json
                   (JSON: command, args, env); the server is started from it
  OUTLOOP_BIN      the outloop binary (for `outloop approve`, as the human runs it)
  OUTLOOP_HOME     the scratch home
  MCP_WORKSPACE    the bound workspace (the server starts there)
  MCP_OUTSIDE      a directory outside every workspace (where the human approves)

  MCP_TRANSCRIPT   optional: a file to write the session's transcript to (JSON: the tool
                   lists and the deterministic tool results, with approval ids, wait times
                   and `date` headers masked), so two runs (daemon and in-process) compare

Every tool result and the server's whole stderr are printed to stdout, so the Rust side can
check that no synthetic secret appears in them. Exits non-zero on the first failed check.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import anyio
import mcp_types as types
from mcp.client import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

BIN = os.environ["OUTLOOP_BIN"]
HOME = os.environ["OUTLOOP_HOME"]
WORKSPACE = os.environ["MCP_WORKSPACE"]
OUTSIDE = os.environ["MCP_OUTSIDE"]
CONFIG = os.path.join(HOME, "config.toml")
ENTRY = json.loads(os.environ["MCP_ENTRY"])
# A guard against a hung server, not a synchronization delay: every wait below ends as soon
# as its event arrives.
GUARD_SECS = 60


TRANSCRIPT = []


def note(label, value):
    """Adds a masked entry to the transcript: a tool result or a tool list."""
    if hasattr(value, "content"):
        body = "\n".join(c.text for c in value.content if getattr(c, "type", None) == "text")
        body = re.sub(r" as [0-9A-Za-z-]+", " as <id>", body)
        body = re.sub(r"outloop (approve|reject) [0-9A-Za-z-]+", r"outloop \1 <id>", body)
        body = re.sub(r"within \d+ s", "within <n> s", body)
        try:
            obj = json.loads(body)
            obj.get("headers", {}).pop("date", None)
            body = obj
        except (ValueError, AttributeError):
            pass
        value = {"is_error": bool(value.is_error), "body": body}
    else:
        value = [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in value
        ]
    TRANSCRIPT.append({"label": label, "value": value})


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def text_of(result):
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    body = "\n".join(texts)
    print(f"--- result (isError={result.is_error}) ---\n{body}", flush=True)
    return body


async def main():
    # How many tools/list_changed arrived, and the event the next one sets.
    changes = {"n": 0, "next": anyio.Event()}

    async def on_message(message):
        if isinstance(message, Exception):
            print(f"transport exception: {message!r}", flush=True)
            return
        if isinstance(message, types.ToolListChangedNotification):
            changes["n"] += 1
            changes["next"].set()

    errlog = tempfile.TemporaryFile(mode="w+")
    params = StdioServerParameters(
        command=ENTRY["command"],
        args=ENTRY["args"],
        env=ENTRY.get("env"),
        cwd=WORKSPACE,
    )
    try:
        with anyio.fail_after(GUARD_SECS * 3):
            # Protocol up to 2025-11-25: the initialize handshake, notifications in-session.
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write, message_handler=on_message) as session:
                    await run_checks(session, changes, errlog)
            # Protocol 2026-07-28: discover, then tools/list_changed on subscriptions/listen.
            await modern_checks(params)
        if os.environ.get("MCP_TRANSCRIPT"):
            with open(os.environ["MCP_TRANSCRIPT"], "w", encoding="utf-8") as f:
                json.dump(TRANSCRIPT, f, indent=1, sort_keys=True)
    finally:
        errlog.seek(0)
        print("--- server stderr ---", flush=True)
        print(errlog.read(), flush=True)


async def wait_stderr(errlog, needle):
    """Waits until the server's stderr holds `needle` (a readiness line, not a delay)."""
    with anyio.fail_after(GUARD_SECS):
        while True:
            errlog.seek(0)
            if needle in errlog.read():
                return
            await anyio.sleep(0.05)


async def run_checks(session, changes, errlog):
    init = await session.initialize()
    check(init.server_info.name == "outloop", "server names itself outloop")
    check(
        init.capabilities.tools is not None and init.capabilities.tools.list_changed,
        "server announces tools.listChanged",
    )

    listed = (await session.list_tools()).tools
    note("tools at start", listed)
    tools = {t.name: t for t in listed}
    print("tools:", sorted(tools), flush=True)
    check("echo__bearer" in tools, "allowed action echo.bearer is the tool echo__bearer")
    check("echo__headers" in tools, "approval action echo.headers is listed")
    check("echo__status" not in tools, "denied action echo.status is not listed")
    check("echo__uuid" not in tools, "echo.uuid is not in the config yet")
    check(
        tools["echo__bearer"].description.startswith("httpbin /bearer"),
        "the tool description is the action's",
    )
    schema = tools["echo__stream"].input_schema
    check(schema["type"] == "object", "input schema is an object schema")
    check(schema["required"] == ["n"], "required parameters are in the schema")
    check(
        schema["properties"]["n"] == {"type": "integer", "minimum": 1, "maximum": 100},
        "parameter types and bounds are in the schema",
    )
    check(schema["additionalProperties"] is False, "no undeclared parameters")

    # An allowed call: httpbin /bearer echoes the token; the result is redacted.
    r = await session.call_tool("echo__bearer", {})
    body = text_of(r)
    note("echo__bearer", r)
    check(not r.is_error, "allowed call is not an error")
    obj = json.loads(body)
    check(obj["action"] == "echo.bearer" and obj["tenant"] == "acme", "result names action and tenant")
    check(obj["status"] == 200, "upstream answered 200")
    check("[REDACTED:echo]" in obj["body"], "the echoed token is redacted")
    check(obj["redactions"] >= 1, "redactions are counted")

    # Typed arguments reach the action.
    r = await session.call_tool("echo__stream", {"n": 2})
    body = text_of(r)
    note("echo__stream n=2", r)
    check(not r.is_error, "call with an integer argument runs")
    check(json.loads(body)["body"].count("\n") == 2, "n=2 gave two lines")

    # A bad argument is an error result naming the parameter.
    r = await session.call_tool("echo__stream", {"n": 1000})
    body = text_of(r)
    note("echo__stream n=1000", r)
    check(r.is_error and body.startswith("invalid_parameter:"), "out-of-range argument is refused")

    # A denied action (not listed, called anyway) is an isError result saying why and what to do.
    r = await session.call_tool("echo__status", {"code": 200})
    body = text_of(r)
    note("echo__status (denied)", r)
    check(r.is_error, "denied call is an error result")
    check(body.startswith("policy_denied:"), "the error names its kind")
    check("policy.tenants.acme.deny" in body, "the error names the rule")
    check("outloop policy explain echo.status" in body, "the error says what the human can do")

    # An approval hold returns at once with the id; the human approves from outside.
    r = await session.call_tool("echo__headers", {})
    body = text_of(r)
    note("echo__headers (held)", r)
    check(r.is_error and body.startswith("approval_required: held"), "held call is an error result")
    approval_id = body.split(" as ", 1)[1].split(" ", 1)[0]
    check(f"outloop approve {approval_id}" in body, "the error says how to approve it")
    approve = subprocess.run(
        [BIN, "approve", approval_id],
        cwd=OUTSIDE,
        env={**os.environ, "OUTLOOP_HOME": HOME},
        capture_output=True,
        text=True,
    )
    print(approve.stdout, approve.stderr, flush=True)
    check(approve.returncode == 0, "the human approved it")
    r = await session.call_tool("echo__headers", {})
    body = text_of(r)
    note("echo__headers (approved)", r)
    check(not r.is_error, "the approved call returns its result")
    check("[REDACTED:key]" in json.loads(body)["body"], "the approved result is redacted")

    # The `request` tool sends through the aliases the tenant may use.
    req = tools["request"]
    check(req.input_schema["properties"]["alias"]["enum"] == ["bin"], "request lists only allowed aliases")
    check(req.input_schema["required"] == ["alias", "method", "path"], "request needs alias, method, path")
    check("GET /bearer" in req.description, "request's description shows the alias rules")
    r = await session.call_tool("request", {"alias": "bin", "method": "GET", "path": "/bearer"})
    body = text_of(r)
    note("request GET /bearer", r)
    check(not r.is_error, "an alias request runs")
    obj = json.loads(body)
    check(obj["action"] == "alias:bin" and obj["status"] == 200, "alias result names alias:bin")
    check("[REDACTED:echo]" in obj["body"], "the alias response is redacted")
    r = await session.call_tool(
        "request",
        {"alias": "bin", "method": "POST", "path": "/anything/x", "query": "a=1", "body": {"n": 7}},
    )
    body = text_of(r)
    note("request POST /anything/x", r)
    check(not r.is_error, "an alias POST with a JSON body runs")
    echoed = json.loads(json.loads(body)["body"])
    check(echoed["json"] == {"n": 7} and echoed["args"] == {"a": "1"}, "body and query reach the upstream")
    r = await session.call_tool("request", {"alias": "bin", "method": "DELETE", "path": "/anything/x"})
    body = text_of(r)
    note("request DELETE (denied)", r)
    check(r.is_error and body.startswith("policy_denied:"), "a method the alias does not allow is denied")
    r = await session.call_tool("request", {"alias": "other", "method": "GET", "path": "/get"})
    body = text_of(r)
    note("request other (denied)", r)
    check(r.is_error and body.startswith("policy_denied:"), "an alias the tenant may not use is denied")
    r = await session.call_tool("request", {"alias": "bin", "method": "GET"})
    body = text_of(r)
    check(r.is_error and "`path` is required" in body, "a missing path is refused")

    # A config edit changes the tools: wait for notifications/tools/list_changed.
    with open(CONFIG, encoding="utf-8") as f:
        good = f.read()
    with open(CONFIG, "a", encoding="utf-8") as f:
        f.write(
            '\n[actions."echo.uuid"]\ndescription = "httpbin /uuid"\nmethod = "GET"\n'
            f'url = "{os.environ["OUTLOOP_TEST_HTTPBIN"]}/uuid"\n'
        )
    with anyio.fail_after(GUARD_SECS):
        await changes["next"].wait()
    check(changes["n"] == 1, "one tools/list_changed after the edit")
    listed = (await session.list_tools()).tools
    note("tools after the edit", listed)
    tools = {t.name for t in listed}
    check("echo__uuid" in tools, "the new action is a tool after the reload")
    r = await session.call_tool("echo__uuid", {})
    text_of(r)
    check(not r.is_error, "the new tool runs")

    # A broken config keeps the previous one and logs one line.
    with open(CONFIG, "a", encoding="utf-8") as f:
        f.write("\n[actions.broken\n")
    await wait_stderr(errlog, "the changed config is not used")
    tools = {t.name for t in (await session.list_tools()).tools}
    check("echo__uuid" in tools and "echo__bearer" in tools, "tools stay after a bad config")
    r = await session.call_tool("echo__bearer", {})
    text_of(r)
    check(not r.is_error, "calls still run after a bad config")
    check(changes["n"] == 1, "a bad config sends no tools/list_changed")

    # Restoring the first config removes the tool again.
    changes["next"] = anyio.Event()
    with open(CONFIG, "w", encoding="utf-8") as f:
        f.write(good)
    with anyio.fail_after(GUARD_SECS):
        await changes["next"].wait()
    check(changes["n"] == 2, "a second tools/list_changed after the restore")
    tools = {t.name for t in (await session.list_tools()).tools}
    check("echo__uuid" not in tools, "the removed action is gone after the next reload")

    r = await session.call_tool("no_such__tool", {})
    text_of(r)
    note("no_such__tool", r)
    check(r.is_error, "an unknown tool is an error result")
    print("mcp client: all checks passed", flush=True)


async def modern_checks(params):
    async with Client(params) as client:
        check(client.session.discover_result is not None, "a 2026-07-28 client connects by discover")
        r = await client.call_tool("echo__bearer", {})
        body = text_of(r)
        check(not r.is_error and "[REDACTED:echo]" in body, "a 2026-07-28 call is redacted")
        with open(CONFIG, encoding="utf-8") as f:
            good = f.read()
        async with client.listen(tools_list_changed=True) as sub:
            check(sub.honored.tools_list_changed, "subscriptions/listen accepts tools_list_changed")
            with open(CONFIG, "a", encoding="utf-8") as f:
                f.write(
                    '\n[actions."echo.ip"]\nmethod = "GET"\n'
                    f'url = "{os.environ["OUTLOOP_TEST_HTTPBIN"]}/ip"\n'
                )
            with anyio.fail_after(GUARD_SECS):
                async for event in sub:
                    print("event:", event, flush=True)
                    break
        tools = {t.name for t in (await client.list_tools()).tools}
        check("echo__ip" in tools, "the listen stream announced the new tool")
        with open(CONFIG, "w", encoding="utf-8") as f:
            f.write(good)
    print("mcp client (2026-07-28): all checks passed", flush=True)


if __name__ == "__main__":
    anyio.run(main)

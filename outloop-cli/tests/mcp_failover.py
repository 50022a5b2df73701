"""Drives `outloop mcp` with the official MCP Python SDK across a daemon that stops in the
middle of the session: the next tool call runs in-process with the same result.

Run by the Rust e2e test `e2e::daemon_frontends` (outloop-cli/tests/e2e/daemon_frontends.rs),
which starts `outloop serve`, then this script, and passes:

  OUTLOOP_BIN      the outloop binary (the server is `outloop mcp` in MCP_WORKSPACE)
  OUTLOOP_HOME     the scratch home
  MCP_WORKSPACE    the bound workspace (given as `--workspace`)
  MCP_OUTSIDE      an unbound directory the server is started in, so the daemon, which
                   takes the workspace from the peer's working directory, sees the
                   workspace only because `--workspace` changed into it

Protocol with the Rust side, one line each on stdout/stdin: this script prints `READY` after
the first calls; the Rust side stops the daemon and writes `go`; this script calls again and
prints `failover: all checks passed`. Every tool result is printed for the leak check.
"""

import json
import os
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

# A guard against a hung server, not a synchronization delay.
GUARD_SECS = 60


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def result_of(r):
    body = "\n".join(c.text for c in r.content if getattr(c, "type", None) == "text")
    print(f"--- result (isError={r.is_error}) ---\n{body}", flush=True)
    check(not r.is_error, "the call is not an error")
    obj = json.loads(body)
    obj["headers"].pop("date", None)
    return obj


async def main():
    params = StdioServerParameters(
        command=os.environ["OUTLOOP_BIN"],
        args=["mcp", "--workspace", os.environ["MCP_WORKSPACE"]],
        env={"OUTLOOP_HOME": os.environ["OUTLOOP_HOME"]},
        cwd=os.environ["MCP_OUTSIDE"],
    )
    with anyio.fail_after(GUARD_SECS * 2):
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                before_tools = [t.name for t in (await session.list_tools()).tools]
                check("echo__bearer" in before_tools, "the workspace's tools through the daemon")
                before = result_of(await session.call_tool("echo__bearer", {}))
                check("[REDACTED:echo]" in before["body"], "redacted through the daemon")
                check(before["tenant"] == "acme", "the workspace's tenant through the daemon")
                print("READY", flush=True)
                line = await anyio.to_thread.run_sync(sys.stdin.readline)
                check(line.strip() == "go", "the daemon was stopped")
                after = result_of(await session.call_tool("echo__bearer", {}))
                check(after == before, "the same result in-process after the daemon stopped")
                after_tools = [t.name for t in (await session.list_tools()).tools]
                check(after_tools == before_tools, "the same tools in-process")
    print("failover: all checks passed", flush=True)


if __name__ == "__main__":
    anyio.run(main)

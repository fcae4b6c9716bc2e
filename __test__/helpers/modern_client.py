"""A 2026-07-28 stdio client for the tests: the official Python MCP SDK 2.x `Client`,
spawning the proxy. It runs the matrix's steps and prints one JSON report on stdout; a step
that fails records its error instead of stopping the others.

    python modern_client.py '{"command": "node", "args": [...], "env": {...}, "mode": "auto"}'
"""

import json
import sys
import time

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters


async def main() -> None:
    cfg = json.loads(sys.argv[1])
    report: dict = {"errors": {}}

    async def elicit(context, params):
        report["elicited"] = params.message
        return types.ElicitResult(action="accept", content={"ok": True})

    changed = anyio.Event()

    async def on_message(message):
        # The old era's change notification (2026-07-28 has subscriptions/listen instead).
        root = getattr(message, "root", message)
        if getattr(root, "method", None) == "notifications/tools/list_changed":
            changed.set()

    params = StdioServerParameters(command=cfg["command"], args=cfg["args"], env=cfg.get("env"))
    started = time.monotonic()
    client = Client(
        params,
        mode=cfg.get("mode", "auto"),
        elicitation_callback=elicit,
        message_handler=on_message,
        read_timeout_seconds=20,
    )

    async def step(name, fn):
        try:
            await fn()
        except Exception as e:  # a failed step is part of the report
            report["errors"][name] = f"{type(e).__name__}: {e}"

    async with client:
        report["connectMs"] = round((time.monotonic() - started) * 1000)
        report["protocol"] = client.protocol_version

        async def list_tools():
            tools = await client.list_tools()
            report["tools"] = sorted(t.name for t in tools.tools)

        async def echo():
            r = await client.call_tool("echo", {"text": "hi"})
            report["echo"] = r.content[0].text

        async def region():
            r = await client.call_tool("region", {"region": "Hello, 世界", "q": "x"})
            report["region"] = json.loads(r.content[0].text)

        async def progress():
            seen = []

            async def on_progress(p, total, message):
                seen.append(p)

            r = await client.call_tool("progress", {"steps": 3}, progress_callback=on_progress)
            report["progressResult"] = r.content[0].text
            report["progress"] = seen

        async def cancel():
            with anyio.move_on_after(1.0):
                await client.call_tool("slow", {"ms": 15000})
                report["cancelled"] = False
                return
            report["cancelled"] = True
            # The session goes on after a cancel.
            r = await client.call_tool("echo", {"text": "after"})
            report["afterCancel"] = r.content[0].text

        async def confirm():
            r = await client.call_tool("confirm", {"what": "deploy"})
            report["confirm"] = json.loads(r.content[0].text)

        async def listen():
            if client.protocol_version != "2026-07-28":
                await client.call_tool("change", {})
                with anyio.fail_after(5):
                    await changed.wait()
                report["event"] = "ToolsListChanged"
                return
            with anyio.fail_after(10):
                async with client.listen(tools_list_changed=True) as sub:
                    await client.call_tool("change", {})
                    async for ev in sub:
                        report["event"] = type(ev).__name__
                        break

        for name, fn in [
            ("list", list_tools),
            ("echo", echo),
            ("region", region),
            ("progress", progress),
            ("cancel", cancel),
            ("confirm", confirm),
            ("listen", listen),
        ]:
            await step(name, fn)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    anyio.run(main)

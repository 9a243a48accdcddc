"""An asyncio relay process killed (SIGKILL, by itself) right after its first batch
was published and before its rows were deleted."""

import asyncio
import os
import signal
import sys

import psycopg

from auditlog import Outbox

dsn, url, token = sys.argv[1:]


async def main():
    relay = Outbox("postgres", source="sdkpy").async_relay(
        lambda: psycopg.AsyncConnection.connect(dsn), url=url, token=token, batch=50,
        after_publish=lambda n: os.kill(os.getpid(), signal.SIGKILL),
    )
    await relay.relay_once()


asyncio.run(main())

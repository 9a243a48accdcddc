"""A relay process killed (SIGKILL, by itself) right after its first batch was
published and before its rows were deleted."""

import os
import signal
import sys

from auditlog import Outbox
from test_outbox import connector

dialect, name, url, token = sys.argv[1:]
relay = Outbox(dialect, source="sdkpy").relay(
    connector(dialect, name), url=url, token=token, batch=50,
    after_publish=lambda n: os.kill(os.getpid(), signal.SIGKILL),
)
relay.relay_once()

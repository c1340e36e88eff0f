"""Named crash points for tests: ``RELAYER_FAILPOINT=after_sign`` kills the process (SIGKILL,
as a power cut would) the first time execution reaches ``failpoint("after_sign")``. Off unless
the variable is set; reading it once keeps the hot path to one comparison."""

from __future__ import annotations

import os
import signal

_ARMED = os.environ.get("RELAYER_FAILPOINT", "")


def failpoint(name: str) -> None:
    if _ARMED and name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)

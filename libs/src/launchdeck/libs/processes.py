"""Whether a process (one we did not necessarily start) still runs."""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether `pid` runs. A zombie (dead, not yet reaped by its parent) does not count: its
    pid still exists, but the process does nothing and holds nothing but that pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        # Exited between the two checks, or there is no procfs and kill() is all we know.
        return not Path("/proc/self").exists()
    except OSError:
        return True
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    return stat[stat.rindex(")") + 2] not in "ZX"

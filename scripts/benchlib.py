"""What the daemon benchmarks' Python helpers share (stdlib only): waiting for the daemon, and
its memory from /proc. Imported by scripts/bench-*.py and by the scripts' inline Python, which
run with scripts/ on PYTHONPATH."""

import sys
import time


def wait_until(what, ready, seconds):
    """Polls `ready()` every 100 ms (an OSError counts as not yet) until it is true; exits naming
    `what` ("answer /healthz") when it is not within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"the daemon did not {what} within {seconds:.0f} s")
        time.sleep(0.1)


def memory_kib(pid):
    """The process's VmRSS and VmHWM, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out

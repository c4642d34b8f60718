"""Kill-point harness: fork a child that performs numbered operations and reports each one
after it returned (its acknowledgement), SIGKILL it at a random moment, and hand the number of
acknowledged operations to a checker that reopens the file.

The child is a fork of the test process (ambervault already imported), so a kill point costs a
few milliseconds, and CI can afford many of them.

``KILLS`` is the number of kill points per scenario for every test in this folder, forked here
or spawned as a fresh interpreter (``AMBERVAULT_CRASH_KILLS``, 20 by default; raise it for long
runs).
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Callable

KILLS = int(os.environ.get("AMBERVAULT_CRASH_KILLS", "20"))


def run_until_killed(work: Callable[[Callable[[int], None]], None], rng: random.Random) -> int:
    """Run ``work(ack)`` in a forked child and kill it after a random number of acks plus a
    random delay. Returns how many operations were acknowledged before the kill."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        try:

            def ack(i: int) -> None:
                os.write(write_fd, b"%d\n" % i)

            work(ack)
            os._exit(0)
        except BaseException:
            os._exit(3)
    os.close(write_fd)
    wanted = rng.randint(1, 25)
    buffer = b""
    while buffer.count(b"\n") < wanted:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        buffer += chunk
    time.sleep(rng.uniform(0, 0.004))
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        buffer += chunk
    os.close(read_fd)
    if os.WIFEXITED(status):
        raise AssertionError(f"child ended by itself with status {os.WEXITSTATUS(status)}")
    lines = buffer.split(b"\n")
    complete = lines[:-1]  # a half-written last line is not an acknowledgement
    return len(complete)

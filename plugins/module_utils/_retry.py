# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one retry layer (private): capped exponential backoff around one attempt function.

Each stack decides *whether* a failure may be repeated (a Vault rotate may not be re-sent after it
reached the server; a Kubernetes 429 always may) and says so by raising :class:`Retry`; how often and
how long to wait is decided here, once.

Most transient failures get a fixed number of retries with backoff.  A failure that is known to last
for a while and then end by itself (a Vault leader election: 6-12 s on a 3-node raft cluster) raises
``Retry(final, window=seconds)`` instead: it is retried, polling every ``poll`` seconds, until
``window`` seconds have passed since the first such failure, whatever the retry count says.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time


class Retry(Exception):
    """Raised by an attempt whose failure is transient; ``final`` is raised when no retry is left."""

    def __init__(self, final, window=None, poll=1.0):
        super(Retry, self).__init__(str(final))
        self.final = final
        self.window = window
        self.poll = poll


def backoff_delays(retries, first=0.5, cap=8.0):
    """Seconds to sleep before each retry: exponential, capped (pure; unit-tested)."""
    return [min(cap, first * (2 ** attempt)) for attempt in range(max(0, retries or 0))]


def with_retries(attempt, retries, sleep=time.sleep, first=0.5, cap=8.0, clock=time.monotonic):
    """Call ``attempt()`` until it returns; after each :class:`Retry` sleep and try again.

    A plain :class:`Retry` uses one of ``retries`` backoff delays; a :class:`Retry` with a ``window`` is
    retried until that many seconds (``clock``) have passed since the first windowed failure.
    """
    delays = backoff_delays(retries, first, cap)
    used = 0
    window_start = None
    while True:
        try:
            return attempt()
        except Retry as transient:
            if transient.window:
                now = clock()
                if window_start is None:
                    window_start = now
                left = window_start + transient.window - now
                if left <= 0:
                    raise transient.final
                sleep(min(transient.poll, left))
                continue
            if used >= len(delays):
                raise transient.final
            sleep(delays[used])
            used += 1

# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one retry layer (private): capped exponential backoff around one attempt function.

Each stack decides *whether* a failure may be repeated (a Vault rotate may not be re-sent after it
reached the server; a Kubernetes 429 always may) and says so by raising :class:`Retry`; how often and
how long to wait is decided here, once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time


class Retry(Exception):
    """Raised by an attempt whose failure is transient; ``final`` is raised when no retry is left."""

    def __init__(self, final):
        super(Retry, self).__init__(str(final))
        self.final = final


def backoff_delays(retries, first=0.5, cap=8.0):
    """Seconds to sleep before each retry: exponential, capped (pure; unit-tested)."""
    return [min(cap, first * (2 ** attempt)) for attempt in range(max(0, retries or 0))]


def with_retries(attempt, retries, sleep=time.sleep, first=0.5, cap=8.0):
    """Call ``attempt()`` until it returns; after each :class:`Retry` sleep and try again, ``retries`` times."""
    for delay in backoff_delays(retries, first, cap) + [None]:
        try:
            return attempt()
        except Retry as transient:
            if delay is None:
                raise transient.final
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover

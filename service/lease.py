"""A runner's hold on a job: the heartbeat that renews its lease, and the signals that make it stop.

A job is leased in the database (`repository.lease_job`); the runner that holds it renews the lease from a
`Heartbeat` thread while it prepares and runs the job, and every write it makes first renews the lease where it
still holds it (`JobRunner._owned`). A runner that finds its lease taken stops with `LeaseLost`, writing nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from mergefront.errors import MergefrontError
from mergefront.service.models import utcnow

log = logging.getLogger(__name__)


class JobCancelled(Exception):  # noqa: N818 (a signal to stop, not an error)
    """The job was cancelled while this runner held it."""


class LeaseLost(Exception):  # noqa: N818 (a signal to stop, not an error)
    """Another runner holds the job now (this one stopped renewing for longer than the lease): this runner stops
    working on it and changes nothing more."""


class Heartbeat:
    """Renews a job's lease from its own thread every quarter lease, while the job is prepared and while it runs.

    It notices a lease taken by another runner and a cancelled job; the runner asks `check()` between steps. A
    database error only skips a beat: the next one tries again.
    """

    def __init__(self, job_id: int, renew: Callable[[int], None], lease_seconds: float) -> None:
        self.job_id, self.renew, self.interval = job_id, renew, lease_seconds / 4
        self.lost, self.cancelled, self._done = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-job-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def check(self) -> None:
        """Raise LeaseLost or JobCancelled once the heartbeat has seen either."""
        if self.lost.is_set():
            raise LeaseLost(self.job_id)
        if self.cancelled.is_set():
            raise JobCancelled(self.job_id)

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.renew(self.job_id)
            except LeaseLost:
                self.lost.set()
                return
            except JobCancelled:
                self.cancelled.set()
                return
            except MergefrontError as exc:  # the database: the lease still runs, the next beat tries again
                log.warning("job %s: lease not renewed this time: %s", self.job_id, exc)


def leased_message(job_id: int, expires: datetime | None) -> str:
    if expires is None:
        return f"job {job_id} is leased by another runner"
    left = (expires - utcnow()).total_seconds()
    return (f"job {job_id} is leased by another runner until {expires:%Y-%m-%d %H:%M:%S} UTC ({max(left, 0):.0f} s "
            "from now, unless that runner renews it); try again after that")

"""Scheduled jobs the app starts: the leaderboard refresh (off unless an interval is configured) and, for a Hub registry,
the check for a newer registry commit (``PROBES_HUB_REGISTRY_REFRESH``).

``PROBES_HUB_LEADERBOARD_EVERY`` (seconds) turns it on; for cron or CI use ``python -m probes_hub.leaderboard``
directly (or ``--every SECONDS`` to loop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

logger = logging.getLogger(__name__)


def start_scheduler(every_s: float, out: str | Path, *, registry: str | None = None, run_now: bool = True, **kwargs) -> BackgroundScheduler:
    """Start a daemon scheduler that regenerates the leaderboard into ``out`` every ``every_s`` seconds; call ``.shutdown()`` to stop."""
    from probes_hub.leaderboard import LeaderboardRefused, regenerate

    def job() -> None:
        try:
            table, seconds = regenerate(registry, out, **kwargs)
            logger.info("leaderboard refreshed: %d rows in %.1f s", len(table), seconds)
        except LeaderboardRefused as refused:  # the previous leaderboard stays in place, and the reason is logged
            logger.warning("leaderboard refresh refused: %s", refused)
        except Exception:  # a bug: logged with its traceback; the schedule stays alive
            logger.exception("leaderboard refresh failed")

    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(job, "interval", seconds=every_s, max_instances=1, coalesce=True, **({"next_run_time": _now()} if run_now else {}))
    scheduler.start()
    return scheduler


def start_refresher(every_s: float, refresh: Callable[[], None]) -> BackgroundScheduler:
    """Start a daemon scheduler that calls ``refresh`` (the app's registry refresh) every ``every_s`` seconds; failures are logged."""

    def job() -> None:
        try:
            refresh()
        except Exception:  # the app keeps serving what it has; the schedule stays alive
            logger.exception("registry refresh failed")

    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(job, "interval", seconds=every_s, max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler


def _now():
    from datetime import datetime

    return datetime.now(UTC)

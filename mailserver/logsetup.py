"""Server log: stdout (for containers and systemd) and daily files under the data folder (Đ7.2)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from storage.dailylog import DailyFileHandler

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_dir: Path, tz: ZoneInfo, level: int = logging.INFO) -> DailyFileHandler:
    root = logging.getLogger()
    root.setLevel(level)
    fmt = logging.Formatter(FORMAT)
    for h in list(root.handlers):
        root.removeHandler(h)
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(fmt)
    root.addHandler(stream)
    daily = DailyFileHandler(log_dir, tz)
    daily.setFormatter(fmt)
    root.addHandler(daily)
    # aiosmtpd logs a deprecation warning about login_data on every login
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return daily

"""Broadcast campaigns: the send rate reached against the cap, and worker memory against campaign size.

A real ``dramatiq`` worker process on RabbitMQ (a throwaway vhost) and SQLite
sends a campaign to the fake Graph API of the tests:

- rate: 5,000 recipients (``--quick``: 300), the fake answering each send in
  100 ms, cap 50/s, batches of 50 a second: achieved sends/s, its share of
  the cap (the target is 0.95 or more), and the most sends the fake saw in
  any one-second window (at most the cap);
- memory: campaigns of 10,000 and 100,000 recipients (``--quick``: 1,000 and
  5,000) with the cap raised so they finish sooner (memory, not pace, is
  measured there): the worker process's peak resident memory (VmHWM), idle
  and after the campaign.

Run: ``.venv/bin/python -m bench broadcast [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from bench.report import report
from tests.support.fake_graph import FakeGraph
from tests.support.services import create_vhost, delete_vhost, wait_for
from tests.support.whatsapp import WHATSAPP_ENV, max_in_any_second, phone
from tests.support.workers import WorkerProcess

CAP = 50
MEMORY_CAP = 5_000
LATENCY = 0.1


def run(*, quick: bool) -> None:
    rate_size = 300 if quick else 5_000
    memory_sizes = (1_000, 5_000) if quick else (10_000, 100_000)
    vhost = create_vhost()
    rows = []
    notes = {"cap_per_second": CAP, "fake_api_latency_s": LATENCY, "batch_size": 50, "batch_interval_s": 1.0}
    try:
        result = _campaign(vhost, rate_size, cap=CAP, latency=LATENCY, interval="1.0")
        rows.append(["rate", rate_size, f"{CAP}/s", result["sent"], result["seconds"], result["rate"],
                     round(result["rate"] / CAP, 3), result["max_in_1s"], result["idle_mb"], result["peak_mb"]])
        for size in memory_sizes:
            result = _campaign(vhost, size, cap=MEMORY_CAP, latency=0.0, interval="0.01")
            rows.append(["memory", size, f"{MEMORY_CAP}/s", result["sent"], result["seconds"], result["rate"],
                         round(result["rate"] / MEMORY_CAP, 3), result["max_in_1s"], result["idle_mb"],
                         result["peak_mb"]])
    finally:
        delete_vhost(vhost)
    notes["memory_rows"] = "cap raised to 5000/s and no API latency so the campaigns run quickly"
    report("broadcast", ["case", "recipients", "cap", "sent", "seconds", "sends_per_s", "rate_per_cap",
                         "max_in_any_1s", "worker_idle_mb", "worker_peak_mb"], rows, notes=notes)


def _campaign(vhost: str, size: int, *, cap: int, latency: float, interval: str) -> dict:
    from wch import create_app, runtime
    from wch.config import Settings
    from wch.db import db, transaction, utcnow
    from wch.jobs.broker import build_publisher
    from wch.messaging import campaigns
    from wch.models import Contact

    workdir = Path(tempfile.mkdtemp(prefix="wch-bench-broadcast-"))
    database_url = f"sqlite:///{workdir / 'bench.sqlite3'}"
    fake = FakeGraph().start()
    if latency:
        fake.slow(latency)
    env = WHATSAPP_ENV | {"WCH_DATABASE_URL": database_url, "WCH_BROKER_URL": vhost, "WCH_SECRET_KEY": "bench",
                          "WHATSAPP_API_URL": fake.url, "WCH_SEND_RATE_LIMIT": str(cap),
                          "WCH_BROADCAST_BATCH_SIZE": "50", "WCH_BROADCAST_BATCH_INTERVAL": interval,
                          "WCH_WORKER_HEARTBEAT": "2"}
    settings = Settings.from_env(env)
    app = create_app(settings, publisher=build_publisher(settings))
    worker = None
    try:
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            now = utcnow()
            for start in range(0, size, 5_000):
                db.session.execute(insert(Contact), [
                    {"phone": phone(i), "name": f"Customer {i}", "created_at": now}
                    for i in range(start, min(size, start + 5_000))
                ])
            db.session.commit()
            with transaction():
                campaign_id = campaigns.create_campaign(name="bench", template_name="promo",
                                                        template_parameters=["{name}"], all_contacts=True).campaign.id
            worker = WorkerProcess(env=env, log=workdir / "worker.log", threads=4).start()
            wait_for(lambda: _worker_child(worker.process.pid), timeout=60, what="the worker process")
            time.sleep(3)  # let it finish booting before measuring its idle size
            idle = _rss_mb(_worker_child(worker.process.pid))
            with transaction():
                campaigns.start_campaign(campaign_id, max_broker_delay=runtime.settings().max_broker_delay)
            wait_for(lambda: _relayed(len(fake.messages()) >= size), timeout=max(120, size / 20),
                     interval=0.5, what=f"{size} sends")
            wait_for(lambda: _relayed(_status(campaign_id) == "completed"), timeout=60, interval=0.2,
                     what="completion")
            peak = _peak_mb(_worker_child(worker.process.pid))
            times = sorted(m.time for m in fake.messages())
            seconds = times[-1] - times[0]
            return {"sent": len(times), "seconds": round(seconds, 2),
                    "rate": round((len(times) - 1) / seconds, 1) if seconds else 0.0,
                    "max_in_1s": max_in_any_second(times), "idle_mb": idle, "peak_mb": peak}
    finally:
        if worker is not None:
            worker.stop()
        fake.stop()
        with app.app_context():
            db.engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def _relayed(done: bool) -> bool:
    """Stand in for periodiq's outbox relay, should RabbitMQ blink while the benchmark runs."""
    from wch.db import db
    from wch.jobs.outbox import relay

    if not done:
        relay()
        db.session.rollback()
    return done


def _status(campaign_id: int) -> str:
    from wch.db import db
    from wch.messaging import campaigns

    db.session.rollback()
    status = campaigns.get_campaign(campaign_id).status
    db.session.rollback()
    return status


def _worker_child(parent: int) -> int | None:
    """The pid of the dramatiq worker process the main process forked."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                return int(entry)
    return None


def _status_field(pid: int, name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise LookupError(name)


def _rss_mb(pid: int) -> float:
    return _status_field(pid, "VmRSS")


def _peak_mb(pid: int) -> float:
    return _status_field(pid, "VmHWM")

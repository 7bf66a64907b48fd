"""The notifier: turns a tick's audit events into outbox rows (`collect`, in the tick: store
writes only) and delivers them from a background thread (`start`/`stop`; `deliver_due` is one
pass, which tests call with their clock). A dead or slow receiver costs the thread its timeout,
never the tick."""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Callable

import httpx

from engine.config.models import Notify
from engine.config.validate import LoadedConfig
from engine.notify import alertmanager, webhook
from engine.notify.events import notification_of
from engine.redact import Redactor
from engine.store import Store
from engine.store.outbox import Outgoing

BACKOFF_BASE_S = 1.0  # the first retry; doubled per attempt
BACKOFF_MAX_S = 60.0
POLL_S = 0.5  # the thread looks for due notifications at least this often


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: 1, 2, 4 ... at most 60."""
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1)))


class Notifier:
    def __init__(self, loaded: LoadedConfig, store: Store, *, clock: Callable[[], float] = time.time,
                 redactor: Redactor | None = None, leading: Callable[[], bool] = lambda: True) -> None:
        self.store = store
        # replicas share one outbox: only the lease holder delivers (a follower's writes are
        # fenced anyway, and it must not send what it could not record)
        self.leading = leading
        store.start_notify_cursor()
        self.clock = clock
        self.redactor = redactor or Redactor(loaded.secrets)
        self.subject = loaded.config.subject.name
        self.receivers: dict[str, Notify] = {n.name: n for n in loaded.config.notify}
        self.webhooks = [n for n in loaded.config.notify if n.webhook is not None]
        self.alertmanagers = [n for n in loaded.config.notify if n.alertmanager is not None]
        config_file = shlex.quote(str(loaded.file))
        self.approve_command: Callable[[int], str] = lambda proposal_id: f"opctl actions approve {config_file} {proposal_id}"
        self._sent_at: dict[str, float] = {}  # alertmanager receiver -> when it last took the alerts
        self._told: dict[tuple[str, int], str] = {}  # (receiver, incident) -> the state recorded as delivered
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    # ------------------------------------------------------------------ in the tick

    def collect(self, now: float) -> int:
        """New audit events -> outbox rows for the webhooks that want them; how many were queued."""
        events = self.store.events_to_notify()
        if not events:
            return 0
        rows = []
        for event in events:
            built = notification_of(event, self.store, subject=self.subject, approve_command=self.approve_command)
            if built is None:
                continue
            name, payload = built
            rows += [(n.name, name, event.id, event.ticket_id, payload) for n in self.webhooks if name in n.events]
        added = self.store.enqueue(rows, through=events[-1].id, at=now)
        if added or self.alertmanagers:
            self._wake.set()
        return added

    # ------------------------------------------------------------------ off the tick

    def deliver_due(self, now: float | None = None) -> None:
        """One delivery pass: due webhook notifications, then Alertmanager when due."""
        if not self.leading():
            return
        client = self._client or httpx.Client()
        self._client = client
        now = self.clock() if now is None else now
        for item in self.store.due_notifications(now):
            self._deliver(client, item, now)
        for receiver in self.alertmanagers:
            assert receiver.alertmanager is not None
            if now - self._sent_at.get(receiver.name, float("-inf")) >= receiver.alertmanager.resend or self._changed(receiver, now):
                self._send_alerts(client, receiver, now)

    def _deliver(self, client: httpx.Client, item: Outgoing, now: float) -> None:
        receiver = self.receivers.get(item.receiver)
        if receiver is None or receiver.webhook is None:
            self.store.record_delivery(item, status="failed", at=now, error="the config no longer declares this receiver")
            return
        if now - item.created_at > receiver.max_age:
            self.store.record_delivery(item, status="expired", at=now,
                                       error=f"not delivered within max_age ({receiver.max_age:g}s): {item.last_error}")
            return
        outcome = webhook.send(client, receiver.webhook, item.payload)
        error = self.redactor.text(outcome.error) if outcome.error else None
        detail = {"http_status": outcome.http_status} if outcome.http_status is not None else {}
        if outcome.ok:
            self.store.record_delivery(item, status="delivered", at=now, detail=detail)
        elif outcome.retry:
            self.store.record_delivery(item, status="retry", at=now, error=error, retry_at=now + backoff(item.attempts + 1),
                                       detail=detail)
        else:
            self.store.record_delivery(item, status="failed", at=now, error=error, detail=detail)

    def _changed(self, receiver: Notify, now: float) -> bool:
        """An incident opened or resolved since the last send: send now, not at the next resend."""
        for incident in self.store.incidents(limit=50):
            if incident.lead_ticket_id is None:
                continue
            state = "resolved" if incident.resolved_at is not None else "firing"
            if self._told.get((receiver.name, incident.id)) != state and (
                    incident.resolved_at is None or now - incident.resolved_at <= receiver.max_age):
                return True
        return False

    def _send_alerts(self, client: httpx.Client, receiver: Notify, now: float) -> None:
        settings = receiver.alertmanager
        assert settings is not None
        batch = alertmanager.alerts(self.store, subject=self.subject, now=now, max_age=receiver.max_age,
                                    watchdog=settings.watchdog, approve_command=self.approve_command)
        if not batch:
            return
        outcome = alertmanager.send(client, settings, batch)
        if not outcome.ok:
            self._sent_at.pop(receiver.name, None)  # try again on the next pass
            return
        self._sent_at[receiver.name] = now
        for alert in batch:  # the audit log says once per state that the alert reached Alertmanager
            incident = alert["labels"].get("incident")
            if incident is None:
                continue
            state = "resolved" if "endsAt" in alert else "firing"
            key = (receiver.name, int(incident))
            if self._told.get(key) != state:
                self._told[key] = state
                found = self.store.incident(int(incident))
                lead = found.lead_ticket_id if found else None
                self.store.add_event("notification", ticket_id=lead, actor=f"notify:{receiver.name}", at=now, data={
                    "receiver": receiver.name, "event": state, "status": "delivered", "incident": int(incident),
                    "http_status": outcome.http_status})

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        if self._thread is not None or not self.receivers:
            return
        self._thread = threading.Thread(target=self._run, name="opctl-notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:  # a defect must not end notifications; the next pass tries again
                logging.getLogger(__name__).exception("notification pass failed")
            self._wake.wait(POLL_S)
            self._wake.clear()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

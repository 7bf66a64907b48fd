"""Notifications: incidents, approvals and actions told to people, never on the tick's path.

Stages (as in Alertmanager's notify pipeline): the tick turns new audit events into outbox rows
(`events.notifications_of`, only for unmuted incidents' tickets: a muted ticket never produces
one) in the store; a background thread (`dispatch.Notifier`) delivers due rows through a
receiver adapter (`webhook`, `alertmanager`) with its own timeout, retries 5xx and network
errors with bounded backoff until the receiver's `max_age`, and records every attempt as a
`notification` event. Alertmanager is state-based besides: every open incident is re-sent each
`resend`, resolved ones with `endsAt`, and a `Watchdog` alert always fires."""

from engine.notify.dispatch import Notifier

__all__ = ["Notifier"]

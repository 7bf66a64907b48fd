"""The webhook receiver adapter: one POST per notification, JSON or a Slack incoming-webhook
payload, signed with HMAC-SHA256 when the receiver has a `secret`."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from engine.config.models import WebhookReceiver
from engine.notify.outcome import Outcome, outcome_of

SIGNATURE_HEADER = "X-Opctl-Signature"
TIMESTAMP_HEADER = "X-Opctl-Timestamp"


def body_of(receiver: WebhookReceiver, payload: dict[str, Any]) -> bytes:
    if receiver.format == "slack":
        text = str(payload.get("summary", payload["event"]))
        blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        if payload.get("approve"):
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"`{payload['approve']}`"}})
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"id {payload['id']}"}]})
        return json.dumps({"text": text, "blocks": blocks}, sort_keys=True).encode()
    return json.dumps(payload, sort_keys=True, default=str).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(client: httpx.Client, receiver: WebhookReceiver, payload: dict[str, Any]) -> Outcome:
    body = body_of(receiver, payload)
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(int(time.time())),
               "X-Opctl-Event": str(payload["event"]), "X-Opctl-Id": str(payload["id"])}
    if receiver.secret:
        headers[SIGNATURE_HEADER] = signature(receiver.secret, body)
    try:
        response = client.post(receiver.url, content=body, headers=headers, timeout=receiver.timeout)
    except httpx.HTTPError as exc:
        return Outcome(False, True, f"{type(exc).__name__}: {exc}" or type(exc).__name__, None)
    return outcome_of(response)

"""The names of the app's log records and of their custom dimensions: what queries, the workbook and
the alerts look for. Pure: `shared.telemetry` writes every record of a run under these names, and
the handlers the event's.

Each record's message starts with its prefix; its attributes (``extra``) become custom dimensions
once exported (`shared.telemetry`).
"""

from __future__ import annotations

import enum

RUN_RECORD = "TRUSTSYNC_RUN"  # one per run
ACTION_RECORD = "TRUSTSYNC_ACTION"  # one per action of a run
VERDICT_RECORD = "TRUSTSYNC_VERDICT"  # one per (gateway, certificate) a run judged
HORIZON_RECORD = "TRUSTSYNC_HORIZON"  # one per needed certificate version and per gateway
AUDIT_RECORD = "TRUSTSYNC_AUDIT"  # the audit's one record per run, with its JSON report
EXPIRY_RECORD = "TRUSTSYNC_EXPIRY"  # one per near-expiry or expired event


class Dim(enum.StrEnum):
    """Custom dimensions: of log records (correlation and per-record), and of metrics (the bounded ones)."""

    # correlation: every record of a run
    TRIGGER = "trigger"
    INVOCATION_ID = "InvocationId"  # the key the Functions host gives its own records of the invocation
    EVENT_ID = "eventId"
    EVENT_TYPE = "eventType"
    CERTIFICATE = "certificate"  # the Key Vault certificate a run or record is about, when it is one
    # per record
    GATEWAY = "gateway"
    ACTION = "action"
    CERTIFICATE_ID = "certificateId"
    STATUS = "status"
    MODE = "mode"
    SCOPE = "scope"
    VERDICT = "verdict"
    REASON = "reason"
    VERSION = "version"
    ITEM = "item"
    EXPIRES = "expires"
    DAYS_LEFT = "daysLeft"
    EXPIRING = "expiring"
    DURATION_SECONDS = "durationSeconds"
    DRIFT_ITEMS = "driftItems"
    REJECTED_VERDICTS = "rejectedVerdicts"
    ERRORS = "errors"
    EARLIEST_EXPIRY = "earliestExpiry"

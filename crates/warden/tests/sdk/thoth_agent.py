"""An agent instrumented with the real Thoth SDK (PyPI `aten-thoth`), run
against `warden serve` by tests/thoth_sdk.rs. THOTH_API_URL and
THOTH_API_KEY point it at Warden. Prints one JSON object: what each tool
received and what the SDK raised."""

import json
import sys

import thoth
from thoth import ThothPolicyViolation

received = {}


def search_docs(args):
    received["search_docs"] = args
    return "3 documents"


def drop_table(args):
    received["db.drop_table"] = args
    return "dropped"


def wire_money(args):
    received["payments.wire"] = args
    return "wired"


def send_email(args):
    received["mail.send"] = args
    return "sent"


tools = thoth.instrument_openai(
    {
        "search_docs": search_docs,
        "db.drop_table": drop_table,
        "payments.wire": wire_money,
        "mail.send": send_email,
    },
    agent_id="support-bot",
    approved_scope=["search_docs", "payments.wire", "mail.send"],
    tenant_id="acme",
    user_id="alice",
)

results = {}
results["allowed"] = tools["search_docs"]({"query": "access control"})
try:
    tools["db.drop_table"]({"table": "customers"})
    results["denied"] = "ran"
except ThothPolicyViolation as e:
    results["denied"] = {"raised": True, "reason": e.reason, "violation_id": e.violation_id}
print("waiting for approval", file=sys.stderr, flush=True)
results["step_up"] = tools["payments.wire"]({"amount": 25000, "to": "DE89370400440532013000"})
results["modified"] = tools["mail.send"]({"to": "ceo@example.com", "body": "quarterly numbers"})
results["received"] = received
print(json.dumps(results))

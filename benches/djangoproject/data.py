"""What the Django views answer, built once at import and the same every
time (no clock, no randomness): the scenarios measure serving it, and the
harness compares every answer with one made in-process by ``reference.py``."""

from __future__ import annotations

JSON = {
    "id": 4211,
    "object": "order",
    "status": "shipped",
    "currency": "EUR",
    "total": 129.9,
    "subtotal": 119.9,
    "tax": 10.0,
    "discount": None,
    "paid": True,
    "gift": False,
    "created": "2026-11-25T09:14:03Z",
    "updated": "2026-11-26T17:40:51Z",
    "customer": {"id": 87, "name": "Ada Lovelace", "email": "ada@example.com"},
    "shipping": {"method": "standard", "carrier": "DHL", "tracking": "JD014600006281"},
    "items": [
        {"sku": f"SKU-{n:04d}", "name": f"item {n}", "quantity": n % 3 + 1, "price": 9.5 + n}
        for n in range(5)
    ],
    "tags": ["web", "priority", "eu"],
    "notes": "Leave at the door.",
    "coupon": "",
    "version": 3,
    "links": {"self": "/orders/4211", "customer": "/customers/87"},
}

_NAMES = ["ada lovelace", "alan turing", "grace hopper", "edsger dijkstra", "barbara liskov"]

ROWS = [
    {
        "code": f"#{1000 + n}",
        "customer": _NAMES[n % len(_NAMES)],
        "total": 12.5 * (n % 17) + 0.99,
        "paid": n % 3 != 0,
    }
    for n in range(200)
]

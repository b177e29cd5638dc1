"""transform: a JSON transform — normalises a list of orders and totals them."""

from decimal import Decimal


def handler(event, context):
    orders = event.get("orders", [])
    normalised = []
    total = Decimal("0")
    for order in orders:
        amount = Decimal(str(order.get("amount", 0))).quantize(Decimal("0.01"))
        total += amount
        normalised.append(
            {"id": str(order.get("id", "")).upper(), "amount": str(amount),
             "currency": order.get("currency", "EUR").upper()}
        )
    return {"count": len(normalised), "total": str(total), "orders": normalised}

#!/usr/bin/env python3
"""Writes the jaffle_shop seed CSVs (customers, orders, payments) from a fixed random seed.

Run again to reproduce the same files byte for byte:
    python3 examples/jaffle_shop/scripts/generate_seeds.py
"""

from __future__ import annotations

import csv
import datetime
import random
import sys
from pathlib import Path

FIRST_NAMES = [
    "Ada", "Bram", "Cato", "Dirk", "Eva", "Femke", "Gijs", "Hanna", "Ids", "Joost",
    "Kees", "Lotte", "Maarten", "Noor", "Otto", "Pien", "Quirine", "Ruud", "Sanne", "Thijs",
    "Uma", "Vera", "Wouter", "Xander", "Yara", "Zeger",
]
LAST_INITIALS = "ABCDEFGHIJKLMNOPRSTVWZ"
PAYMENT_METHODS = ["credit_card", "credit_card", "credit_card", "bank_transfer", "bank_transfer", "coupon", "gift_card"]
FIRST_DAY = datetime.date(2024, 1, 1)
DAYS = 120


def main(out_dir: Path) -> None:
    rng = random.Random(20240101)
    out_dir.mkdir(parents=True, exist_ok=True)

    with open(out_dir / "raw_customers.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "first_name", "last_name"])
        for customer_id in range(1, 101):
            writer.writerow([customer_id, rng.choice(FIRST_NAMES), rng.choice(LAST_INITIALS) + "."])

    orders = []
    for order_id in range(1, 100):
        day = FIRST_DAY + datetime.timedelta(days=rng.randrange(DAYS))
        orders.append([order_id, rng.randint(1, 100), day])
    # Order ids grow with the date, as in a real shop.
    orders.sort(key=lambda o: (o[2], o[0]))
    with open(out_dir / "raw_orders.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "user_id", "order_date", "status"])
        for new_id, (_, user_id, day) in enumerate(orders, start=1):
            age = (FIRST_DAY + datetime.timedelta(days=DAYS) - day).days
            if age < 4:
                status = rng.choice(["placed", "placed", "shipped"])
            elif age < 10:
                status = rng.choice(["shipped", "completed", "completed"])
            else:
                status = rng.choice(["completed"] * 8 + ["return_pending", "returned"])
            writer.writerow([new_id, user_id, day.isoformat(), status])

    with open(out_dir / "raw_payments.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "order_id", "payment_method", "amount"])
        payment_id = 0
        for order_id in range(1, len(orders) + 1):
            for _ in range(1 if rng.random() < 0.78 else 2):
                payment_id += 1
                method = rng.choice(PAYMENT_METHODS)
                # Cents; coupons are small, some payments are zero.
                amount = rng.choice([0, 100, 500, 1000]) if method == "coupon" else rng.randrange(100, 3100, 100)
                writer.writerow([payment_id, order_id, method, amount])


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "seeds")

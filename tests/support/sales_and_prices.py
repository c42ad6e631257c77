"""The sales-and-prices pipeline's workload and checks, for the tests that disturb it (a frozen applier, a lost
network path): shop sales summed into the ERP (`delta`), ERP prices copied into the shop
(`make_sales_and_prices_sides`)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import yaml

from tests.support.sides import Sides

PRODUCTS = 20


def split_config(config: Path) -> tuple[Path, Path]:
    """The config's captures alone, and its appliers alone."""
    whole = yaml.safe_load(config.read_text())
    captures, appliers = config.with_name("captures.yaml"), config.with_name("appliers.yaml")
    captures.write_text(yaml.safe_dump({**whole, "targets": []}))
    appliers.write_text(yaml.safe_dump({**whole, "sources": []}))
    return captures, appliers


class SalesAndPricesWorkload:
    """Shop sales and ERP price changes, one transaction every few milliseconds, from start to stop."""

    def __init__(self, sides: Sides, seed: int) -> None:
        self._sides, self._rng = sides, random.Random(seed)
        self._stop = threading.Event()
        self._failures: list[BaseException] = []
        self._thread = threading.Thread(target=self._write, name="workload")
        self._thread.start()

    def _write(self) -> None:
        try:
            while not self._stop.is_set():
                product = self._rng.randrange(PRODUCTS)
                if self._rng.random() < 0.5:
                    self._sides.shop_sql("UPDATE ps_sales SET sold = sold + %s WHERE id_product = %s",
                                         (self._rng.randint(1, 5), product))
                else:
                    self._sides.erp_sql("UPDATE product_price SET price = price + 0.01 WHERE id = %s", (product,))
                time.sleep(0.005)
        except Exception as exc:  # noqa: BLE001 (reported by stop(), not lost in the thread)
            self._failures.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._failures:
            raise self._failures[0]


def write_for(sides: Sides, seconds: float, seed: int) -> None:
    workload = SalesAndPricesWorkload(sides, seed)
    time.sleep(seconds)
    workload.stop()


def converged(sides: Sides) -> bool:
    sales = dict(sides.shop_sql("SELECT id_product, sold FROM ps_sales"))
    prices = dict(sides.erp_sql("SELECT id, price FROM product_price"))
    return (dict(sides.erp_sql("SELECT id, sold FROM product_sales")) == sales
            and dict(sides.shop_sql("SELECT id_product, price FROM ps_price")) == prices)


def state_of(sides: Sides) -> str:
    return "\n".join(f"{what}: {rows}" for what, rows in (
        ("shop sales", sorted(sides.shop_sql("SELECT id_product, sold FROM ps_sales"))),
        ("erp sales", sorted(sides.erp_sql("SELECT id, sold FROM product_sales"))),
        ("erp prices", sorted(sides.erp_sql("SELECT id, price FROM product_price"))),
        ("shop prices", sorted(sides.shop_sql("SELECT id_product, price FROM ps_price"))),
    ))

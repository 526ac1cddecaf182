"""
What an C{add_many} command asks of an admin driver: both drivers
(C{ice_admin_driver.py}, C{gridreg_admin_driver.py}) read its options with
this one function, so the two registries get the same writes. Standard
library only: the Ice driver runs under the system Python, which imports it
from the script's own directory.
"""

from typing import Any


def add_many_plan(options: dict[str, Any]) -> tuple[list[str], str, int]:
    """The proxies to add (as strings), their type, and how many may be in flight."""
    category = str(options.get("category", "bench"))
    prefix = str(options.get("prefix", "obj"))
    first = int(options.get("start", 0))
    count = int(options.get("count", 1))
    endpoints = str(options.get("endpoints", "tcp -h 127.0.0.1 -p 10000"))
    type_id = str(options.get("type", "::Demo::Hello"))
    in_flight = max(1, int(options.get("in_flight", 1)))
    proxies = [f"{category}/{prefix}{i}:{endpoints}" for i in range(first, first + count)]
    return proxies, type_id, in_flight

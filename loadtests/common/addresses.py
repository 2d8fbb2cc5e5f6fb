"""Distinct simulated client IPs, sent as X-Forwarded-For so per-IP limits see many clients."""

from __future__ import annotations

import random
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network


class ClientAddresses:
    """Distinct client IPs for simulated users, drawn at random from one network."""

    def __init__(self, network: str, rng: random.Random) -> None:
        self._network: IPv4Network | IPv6Network | None = (
            ip_network(network, strict=False) if network else None
        )
        self._rng = rng
        self._given: set[str] = set()

    def next(self) -> str | None:
        net = self._network
        if net is None:
            return None
        usable = net.num_addresses - 2 if net.num_addresses > 2 else net.num_addresses
        for _ in range(100):
            offset = 1 + self._rng.randrange(usable) if net.num_addresses > 2 else 0
            address = str(ip_address(int(net.network_address) + offset))
            if address not in self._given:
                self._given.add(address)
                return address
        return address

"""Which addresses servers listen on, read from the kernel's socket table (`ss -ltn`),
never by connecting to the machine's other addresses."""

from __future__ import annotations

import subprocess


def listening_addresses(ports: set[int]) -> set[str]:
    """Local addresses of the TCP sockets listening on these ports."""
    lines = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout.splitlines()
    found = set()
    for line in lines:
        address, _, port = line.split()[3].rpartition(":")
        if int(port) in ports:
            found.add(address)
    return found

"""sd_notify without a dependency: READY, WATCHDOG, RELOADING, STOPPING and STATUS datagrams."""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    """Sends to $NOTIFY_SOCKET when running under systemd; does nothing elsewhere."""

    def __init__(self, socket_path: str | None = None) -> None:
        self.address = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")

    def notify(self, message: str) -> bool:
        if not self.address:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.sendall(message.encode())
            return True
        except OSError:
            return False

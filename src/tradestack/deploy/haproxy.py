"""HAProxy's runtime API (the admin stats socket): weights and server states change live, never by reload.

Weights are set with ``set weight <backend>/<server> N`` and read back from ``show servers state <backend>``
(``srv_uweight``), so what the deploy engine reports is what HAProxy does, not what it asked for.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

RECEIVE_BYTES = 65536


class HAProxyError(Exception):
    """The runtime API refused a command or is unreachable; the message says which and why."""


@dataclass(frozen=True)
class ServerState:
    name: str
    address: str
    port: int
    operational: int  # srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping
    admin: int  # srv_admin_state bit field: 0x01 forced maintenance, 0x08 drain (forced)
    weight: int  # srv_uweight: the weight set by the runtime API or the configuration

    @property
    def draining(self) -> bool:
        return bool(self.admin & 0x08)


class HAProxy:
    def __init__(self, socket_path: str, backend: str, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.backend = backend
        self.timeout = timeout

    def command(self, line: str) -> str:
        """Send one command and return HAProxy's answer (HAProxy closes the connection after it)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(RECEIVE_BYTES):
                    chunks.append(chunk)
        except OSError as exc:
            raise HAProxyError(f"HAProxy runtime API at {self.socket_path}: {exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    def _checked(self, line: str) -> None:
        answer = self.command(line).strip()
        if answer:  # successful set commands answer nothing
            raise HAProxyError(f"{line!r}: {answer}")

    def set_weight(self, server: str, weight: int) -> None:
        self._checked(f"set weight {self.backend}/{server} {weight}")

    def set_state(self, server: str, state: str) -> None:
        """``ready``, ``drain`` or ``maint``."""
        self._checked(f"set server {self.backend}/{server} state {state}")

    def servers(self) -> dict[str, ServerState]:
        """The backend's servers as HAProxy runs them now."""
        answer = self.command(f"show servers state {self.backend}")
        lines = [line for line in answer.splitlines() if line.strip()]
        header = next((line for line in lines if line.startswith("# be_id")), None)
        if header is None:
            raise HAProxyError(f"show servers state {self.backend}: {answer.strip()[:300]}")
        columns = header.lstrip("# ").split()
        found: dict[str, ServerState] = {}
        for line in lines:
            if line.startswith("#") or (line[0].isdigit() and len(line.split()) < len(columns) // 2):
                continue
            row = dict(zip(columns, line.split(), strict=False))
            if row.get("be_name") != self.backend:
                continue
            found[row["srv_name"]] = ServerState(
                name=row["srv_name"],
                address=row["srv_addr"],
                port=int(row.get("srv_port", 0)),
                operational=int(row["srv_op_state"]),
                admin=int(row["srv_admin_state"]),
                weight=int(row["srv_uweight"]),
            )
        return found

    def weights(self) -> dict[str, int]:
        return {name: server.weight for name, server in self.servers().items()}

    def sessions(self, server: str) -> int:
        """Requests the server is serving right now (``scur`` of ``show stat``)."""
        return int(self.stat(server).get("scur") or 0)

    def stat(self, server: str) -> dict[str, str]:
        """The server's row of ``show stat`` (``scur`` in flight, ``stot`` served in total, ``status``, ...)."""
        answer = self.command("show stat")
        lines = answer.splitlines()
        if not lines or not lines[0].startswith("# "):
            raise HAProxyError(f"show stat: {answer.strip()[:300]}")
        columns = lines[0][2:].split(",")
        for line in lines[1:]:
            row = dict(zip(columns, line.split(","), strict=False))
            if row.get("pxname") == self.backend and row.get("svname") == server:
                return row
        raise HAProxyError(f"no server {self.backend}/{server} in show stat")

"""What the emulators share: an SMTP door that can listen on port 0, and the lifecycle of
an emulator that opens an HTTP door and an SMTP door on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Protocol, Self

from aiosmtpd.controller import Controller


class PortZeroController(Controller):
    """aiosmtpd's Controller, able to listen on port 0 (it would otherwise probe port 0)."""

    def _trigger_server(self) -> None:
        server = self.server
        if self.port == 0 and isinstance(server, asyncio.Server):
            self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class Door(Protocol):
    """A listening server of an emulator."""

    @property
    def port(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Closable(Protocol):
    def close(self) -> None: ...


class TwoDoors:
    """Start, stop and close an emulator with an HTTP door and an SMTP door.

    Subclasses set ``label``, ``_ports`` and ``_database`` (closed by :meth:`close`) and
    build the doors in :meth:`_doors`; the database stays open for reading between
    :meth:`stop` and :meth:`close`.
    """

    label = "emulator"
    _database: Closable
    _ports: tuple[int, int]  # (SMTP, HTTP); 0 picks a free port
    _smtp: Door | None = None
    _http: Door | None = None

    def _doors(self, smtp_port: int, http_port: int) -> tuple[Door, Door]:
        """(HTTP door, SMTP door), not started yet."""
        raise NotImplementedError

    def start(self) -> Self:
        """Open both doors. Returns self, so ``x = Sandbox().start()`` reads well."""
        if self._smtp is not None:
            raise RuntimeError(f"the {self.label} sandbox is already running")
        http, smtp = self._doors(*self._ports)
        try:
            http.start()
            smtp.start()
        except BaseException:
            http.stop()
            raise
        self._http, self._smtp = http, smtp
        return self

    def stop(self) -> None:
        """Close both doors; the database stays open for reading until :meth:`close`."""
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None
        if self._http is not None:
            self._http.stop()
            self._http = None

    def close(self) -> None:
        """Stop and close the database."""
        self.stop()
        self._database.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._smtp is not None

    @property
    def smtp_port(self) -> int:
        if self._smtp is None:
            raise RuntimeError(f"the {self.label} sandbox is not running")
        return self._smtp.port

    @property
    def http_port(self) -> int:
        if self._http is None:
            raise RuntimeError(f"the {self.label} sandbox is not running")
        return self._http.port


def serve_until_signalled(
    sandbox: TwoDoors,
    describe: Callable[[], list[str]],
    *,
    out: Callable[[str], None],
    stop: threading.Event | None = None,
) -> None:
    """Run ``sandbox`` in the foreground, print ``describe()`` (its endpoints) once it is
    up, and stop on SIGINT or SIGTERM (or when ``stop`` is set)."""
    done = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    in_main = threading.current_thread() is threading.main_thread()
    with sandbox:
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, _on_signal)
        try:
            for line in describe():
                out(line)
            out("Press Ctrl-C to stop.")
            while not done.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    out(f"{sandbox.label} emulator stopped.")


def relay_text(smarthost: tuple[str, int] | None) -> str:
    """Where an emulator's outgoing mail goes, for its start-up lines."""
    return f"{smarthost[0]}:{smarthost[1]}" if smarthost else "none: mails kept in outbox"

"""A small asyncio client for clamd's INSTREAM command (Đ8.2.b virus scanning).

The PyPI clients are synchronous or push 1 KiB chunks through threads
(~9 MB/s); this one writes large chunks straight from the event loop
(~300 MB/s on this machine, see COMPONENTS.md). The protocol
(clamd(8)): `zINSTREAM\\0`, then chunks each prefixed with a 4-byte
big-endian length, a zero-length chunk to finish, and one reply
`stream: OK\\0` or `stream: <Signature> FOUND\\0`.

clamd closes the socket without a reply when a stream exceeds its
`StreamMaxLength`; asyncio then shows only a broken pipe, so the caller
learns that as `ScannerUnavailable` with a clear reason. Every failure to
get a verdict is `ScannerUnavailable`: the SMTP check turns it into a
temporary error (fail-closed) unless the policy says fail-open.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from smtp.daemons import DaemonAddress

CHUNK = 256 * 1024


class ScannerUnavailable(Exception):
    """clamd could not give a verdict (down, timeout, refused the stream)."""


@dataclass(frozen=True)
class Verdict:
    infected: bool
    signature: str | None = None


class ClamdClient(DaemonAddress):
    # Neither socket nor host configured: every scan fails, so mail is refused with 451 (fail closed)
    # unless the policy says fail-open. The server still starts (the web pages and IMAP do not need clamd).

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self.configured:
            raise ConnectionRefusedError("clamd is not configured (clamd.socket, or clamd.host and clamd.port)")
        if self.socket is not None:
            return await asyncio.open_unix_connection(str(self.socket))
        return await asyncio.open_connection(self.host, self.port)

    async def _command(self, payload: bytes | memoryview | None, command: bytes) -> bytes:
        reader, writer = await self._connect()
        try:
            writer.write(command)
            if payload is not None:
                view = memoryview(payload)
                for start in range(0, len(view), CHUNK):
                    chunk = view[start : start + CHUNK]
                    writer.write(struct.pack(">I", len(chunk)))
                    writer.write(chunk)
                    await writer.drain()
                writer.write(b"\0\0\0\0")
            await writer.drain()
            reply = await reader.readuntil(b"\0")
            return reply.rstrip(b"\0")
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def ping(self) -> bool:
        try:
            return await asyncio.wait_for(self._command(None, b"zPING\0"), self.timeout) == b"PONG"
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            return False

    async def scan(self, data: bytes | memoryview) -> Verdict:
        """Stream `data` to clamd; raises ScannerUnavailable when there is no verdict."""
        try:
            reply = await asyncio.wait_for(self._command(data, b"zINSTREAM\0"), self.timeout)
        except TimeoutError:
            raise ScannerUnavailable(f"clamd at {self.address} did not answer within {self.timeout:g} s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            raise ScannerUnavailable(
                f"clamd at {self.address} is unreachable or closed the stream ({e.__class__.__name__}; "
                "is StreamMaxLength below the message size limit?)"
            ) from None
        text = reply.decode("utf-8", "replace")
        if text.endswith("FOUND"):
            # "stream: Eicar-Test-Signature FOUND"
            signature = text.split(":", 1)[-1].strip()[: -len("FOUND")].strip()
            return Verdict(True, signature or "unknown")
        if text.endswith("OK"):
            return Verdict(False)
        raise ScannerUnavailable(f"clamd at {self.address} answered {text!r}")

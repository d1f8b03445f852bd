"""TLS with a small per-connection buffer, for implicit TLS (993) and STARTTLS (143).

Python 3.11's asyncio TLS (`asyncio.sslproto.SSLProtocol`) allocates a
256 KiB receive buffer for every connection when it is created and keeps it
for the connection's life. Thunderbird and Outlook keep several IMAP
connections open all day, mostly idle, so 1,000 users cost ~300 MB in
buffers alone. A TLS record carries at most 16 KiB of plaintext (RFC 8446
§5.1) and the kernel already buffers the socket, so 16 KiB plus a record's
overhead loses nothing: a 20 MB APPEND simply arrives in more reads.

We keep asyncio's tested TLS state machine and only lower `max_size`, the
class attribute both the up-front allocation and every decrypting read use.
`sslproto` is not a public module, so `tests/test_imap_tls.py` checks that the
attribute still governs the allocation on the running Python.
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto

# One maximal TLS record: 16 KiB of plaintext plus header, MAC and padding (RFC 8446 §5.2).
BUFFER_SIZE = 16 * 1024 + 512
HANDSHAKE_TIMEOUT = 30.0


class SmallBufferSSLProtocol(sslproto.SSLProtocol):
    """asyncio's SSLProtocol with a 16.5 KiB instead of a 256 KiB receive buffer."""

    max_size = BUFFER_SIZE


def implicit_tls_factory(
    loop: asyncio.AbstractEventLoop, ctx: ssl.SSLContext, app_factory: type[asyncio.Protocol] | object
) -> object:
    """A protocol factory for `loop.create_server` that wraps each connection in TLS (port 993).

    The application protocol sees `connection_made` only after the handshake,
    exactly as with `create_server(ssl=ctx)`.
    """

    def make() -> asyncio.BaseProtocol:
        app = app_factory()  # type: ignore[operator]
        return SmallBufferSSLProtocol(
            loop, app, ctx, None, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
        )

    return make


async def start_tls(
    transport: asyncio.BaseTransport, protocol: asyncio.BaseProtocol, ctx: ssl.SSLContext
) -> asyncio.Transport:
    """Upgrade a plain server connection to TLS (STARTTLS, RFC 3501 §6.2.1).

    The same steps as `loop.start_tls`, with the small-buffer protocol.
    The caller must have discarded any plaintext it read after the STARTTLS
    command line (RFC 3501 §11.1; a client's pipelined plaintext must never
    count as sent over TLS).
    """
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    ssl_protocol = SmallBufferSSLProtocol(
        loop, protocol, ctx, waiter, server_side=True,
        ssl_handshake_timeout=HANDSHAKE_TIMEOUT, call_connection_made=False,
    )
    transport.pause_reading()  # type: ignore[attr-defined]
    transport.set_protocol(ssl_protocol)
    conmade = loop.call_soon(ssl_protocol.connection_made, transport)
    resume = loop.call_soon(transport.resume_reading)  # type: ignore[attr-defined]
    try:
        await waiter
    except BaseException:
        transport.close()
        conmade.cancel()
        resume.cancel()
        raise
    return ssl_protocol._app_transport  # the documented result of loop.start_tls, same object

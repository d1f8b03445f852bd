"""TLS without a receive buffer per connection, for implicit TLS (993) and STARTTLS (143).

Python 3.11's asyncio TLS (`asyncio.sslproto.SSLProtocol`) allocates a
256 KiB receive buffer for every connection when it is created and keeps it
for the connection's life. Thunderbird and Outlook keep several IMAP
connections open all day, mostly idle, so 1,000 users cost ~300 MB in
buffers alone.

That buffer only carries ciphertext from `recv_into` to the TLS object's
memory BIO: the event loop calls `get_buffer`, `recv_into` and
`buffer_updated` one after another in one callback, and `buffer_updated`
copies the bytes into the BIO at once. Nothing else can run in between, so
every connection of the process can use the same buffer. We keep asyncio's
tested TLS state machine and only hand it that shared buffer.
`max_size` stays one TLS record (16 KiB of plaintext, RFC 8446 §5.1, plus
overhead): it is also the size of each decrypted chunk passed up.

`sslproto` is not a public module, so `tests/test_imap_tls.py` checks on the
running Python that the buffer is shared and that concurrent large
transfers arrive intact.
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto

# One maximal TLS record: 16 KiB of plaintext plus header, MAC and padding (RFC 8446 §5.2).
BUFFER_SIZE = 16 * 1024 + 512
HANDSHAKE_TIMEOUT = 30.0


SHARED_BUFFER_SIZE = 256 * 1024  # one for the whole process: large reads for large uploads
_SHARED = memoryview(bytearray(SHARED_BUFFER_SIZE))


class SmallBufferSSLProtocol(sslproto.SSLProtocol):
    """asyncio's SSLProtocol reading ciphertext into one process-wide buffer."""

    max_size = BUFFER_SIZE

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # The 16.5 KiB bytearray the base class just made is dropped here.
        self._ssl_buffer = _SHARED.obj
        self._ssl_buffer_view = _SHARED

    def get_buffer(self, n: int) -> memoryview:
        return _SHARED


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

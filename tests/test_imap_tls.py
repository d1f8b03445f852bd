"""TLS memory: every IMAP TLS connection (993 and STARTTLS) uses a 16.5 KiB receive
buffer instead of asyncio's 256 KiB (Python 3.11 allocates it up front per connection)."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest

from imap_gateway.tls import BUFFER_SIZE, SmallBufferSSLProtocol
from tests.imap_support import PLAIN_PASSWORD, make_server


def test_the_subclass_still_controls_asyncios_allocation():
    """asyncio.sslproto is private: if a Python release stops sizing its buffer by
    `max_size`, this fails instead of memory silently growing back."""
    loop = asyncio.new_event_loop()
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        proto = SmallBufferSSLProtocol(loop, asyncio.Protocol(), ctx, None, server_side=True)
        assert len(proto._ssl_buffer) == BUFFER_SIZE < 20 * 1024
        assert len(proto.get_buffer(-1)) == BUFFER_SIZE
        assert len(proto.get_buffer(1 << 20)) == BUFFER_SIZE
    finally:
        loop.close()


@pytest.mark.parametrize("port", ["imaps", "imap"])
def test_live_connections_use_the_small_buffer(tmp_path, port):
    with make_server(tmp_path) as srv:
        addr = srv.add_person("Trịnh Văn Minh", PLAIN_PASSWORD, birth_year=1977)
        if port == "imaps":
            c = srv.imaps()
        else:
            c = srv.imap()
            c.starttls(ssl_context=srv.client_context())
        c.login(addr, PLAIN_PASSWORD)
        service = next(s for s in srv.services if s.name == port)
        deadline = time.monotonic() + 5
        while not service.sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        (session,) = service.sessions
        ssl_protocol = session.conn.transport._ssl_protocol
        assert isinstance(ssl_protocol, SmallBufferSSLProtocol)
        assert len(ssl_protocol._ssl_buffer) == BUFFER_SIZE
        assert session.conn.transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        c.logout()

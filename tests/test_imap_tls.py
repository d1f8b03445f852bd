"""TLS memory: IMAP TLS connections (993 and STARTTLS) share one receive buffer instead of
asyncio's 256 KiB each (Python 3.11 allocates it up front per connection), and data still
arrives intact when many connections upload at once."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import ssl
import threading
import time

import pytest

from imap_gateway.tls import BUFFER_SIZE, SmallBufferSSLProtocol
from tests.imap_support import PLAIN_PASSWORD, make_server


def test_the_subclass_still_controls_asyncios_buffer():
    """asyncio.sslproto is private: if a Python release stops reading through these
    attributes, this fails instead of memory silently growing back."""
    loop = asyncio.new_event_loop()
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        a = SmallBufferSSLProtocol(loop, asyncio.Protocol(), ctx, None, server_side=True)
        b = SmallBufferSSLProtocol(loop, asyncio.Protocol(), ctx, None, server_side=True)
        assert a.get_buffer(-1) is b.get_buffer(1 << 20) is a._ssl_buffer_view is b._ssl_buffer_view
        assert a.max_size == BUFFER_SIZE < 20 * 1024  # the decrypted chunk size
        assert "_ssl_buffer_view[:nbytes]" in inspect.getsource(asyncio.sslproto.SSLProtocol.buffer_updated)
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
        assert ssl_protocol._ssl_buffer_view is SmallBufferSSLProtocol.get_buffer(ssl_protocol, -1)
        assert session.conn.transport.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        c.logout()


def test_concurrent_uploads_over_the_shared_buffer_arrive_intact(imap_server):
    """Four clients APPEND 1 MB each at the same time through TLS: every byte lands where it belongs."""
    user = imap_server.new_user()
    blobs = [os.urandom(700 * 1024) for _ in range(4)]
    messages = [b"Subject: part %d\r\n\r\n" % i + blob.hex().encode()[: 1024 * 1024] for i, blob in enumerate(blobs)]
    results: list[bytes] = [b""] * 4

    def upload(i: int) -> None:
        c = imap_server.login(user)
        typ, data = c.append("INBOX", None, None, messages[i])
        assert typ == "OK", data
        results[i] = data[0]
        c.logout()

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    c = imap_server.login(user)
    c.select("INBOX")
    for i, result in enumerate(results):
        uid = re.search(rb"APPENDUID \d+ (\d+)", result).group(1).decode()
        typ, data = c.uid("FETCH", uid, "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == messages[i]
    c.logout()

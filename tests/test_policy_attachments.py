"""Đ7.3.b attachment arithmetic: decoded sizes of every part that is not the text body (pure, no I/O)."""

from __future__ import annotations

import os
from email.message import EmailMessage
from email.policy import SMTP

from hypothesis import given, settings
from hypothesis import strategies as st

from policy.attachments import attachment_bytes, attachment_report, decoded_size, multipart_children
from policy.limits import attachments_fit
from policy.model import AttachmentPolicy

MiB = 1024 * 1024
RULES = AttachmentPolicy()


def message(text: str = "Kính gửi các đồng chí,\nXin gửi tài liệu.", html: str | None = None,
            files: list[tuple[str, int]] = (), inline_images: int = 0) -> EmailMessage:
    m = EmailMessage(policy=SMTP)
    m["From"] = "nguyenvana@phuyen.gov.vn"
    m["To"] = "tranthib@phuyen.gov.vn"
    m["Subject"] = "Tài liệu họp"
    m.set_content(text)
    if html is not None:
        m.add_alternative(html, subtype="html")
        for n in range(inline_images):
            m.get_payload()[1].add_related(os.urandom(1000 + n), "image", "png", cid=f"<img{n}@x>")
    for name, size in files:
        m.add_attachment(os.urandom(size), maintype="application", subtype="pdf", filename=name)
    return m


def raw(m: EmailMessage) -> bytes:
    return m.as_bytes(policy=SMTP)


def test_text_only_message_has_no_attachments():
    assert attachment_bytes(raw(message())) == 0


def test_html_alternative_is_text_body_not_attachment():
    assert attachment_bytes(raw(message(html="<p>Xin chào</p>"))) == 0


def test_inline_images_of_an_html_mail_count():
    r = attachment_report(raw(message(html="<p><img src=cid:img0@x></p>", inline_images=2)))
    assert r.total == 1000 + 1001
    assert [p.content_type for p in r.parts] == ["image/png", "image/png"]


def test_one_file_counts_at_decoded_size_not_base64_size():
    r = attachment_report(raw(message(files=[("bao-cao.pdf", 123_457)])))
    assert r.total == 123_457
    assert r.parts[0].filename == "bao-cao.pdf"


def test_d7_3_b_14_9_mib_one_file_fits_15_1_mib_does_not():
    assert attachments_fit(attachment_bytes(raw(message(files=[("a.pdf", int(14.9 * MiB))]))), RULES)
    assert not attachments_fit(attachment_bytes(raw(message(files=[("a.pdf", int(15.1 * MiB))]))), RULES)


def test_d7_3_b_several_files_are_summed():
    four = [(f"f{i}.pdf", int(14.9 * MiB) // 4) for i in range(4)]
    assert attachment_bytes(raw(message(files=four))) == 4 * (int(14.9 * MiB) // 4)
    assert attachments_fit(attachment_bytes(raw(message(files=four))), RULES)
    over = [(f"f{i}.pdf", int(15.1 * MiB) // 3 + 1) for i in range(3)]
    assert not attachments_fit(attachment_bytes(raw(message(files=over))), RULES)


def test_attached_message_counts_entirely_including_its_text():
    inner = message(text="x" * 5000, files=[("inner.pdf", 2000)])
    outer = message()
    outer.add_attachment(inner)  # message/rfc822
    total = attachment_bytes(raw(outer))
    # inner text body (5000 characters + line end, as its transfer encoding decodes) + 2000
    assert 7000 <= total <= 7100


def test_text_file_with_a_name_is_an_attachment():
    m = message()
    m.add_attachment("dòng 1\ndòng 2\n", filename="ghi-chu.txt")
    r = attachment_report(raw(m))
    assert r.parts and r.parts[0].filename == "ghi-chu.txt"
    # decoded as transported: the text's line ends are CRLF on the wire (RFC 2045 §2.10 canonical form)
    assert r.total == len("dòng 1\r\ndòng 2\r\n".encode())


def test_non_mime_message_body_is_text():
    assert attachment_bytes(b"Subject: hi\r\n\r\nhello\r\n") == 0


def test_headers_only_message():
    assert attachment_bytes(b"Subject: hi\r\n") == 0


def test_decoded_size_base64_and_quoted_printable():
    import base64
    import quopri

    for n in (0, 1, 2, 3, 4, 57, 58, 1000):
        data = os.urandom(n)
        b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
        assert decoded_size(b64, "base64") == n
        flat = data.replace(b"\n", b"").replace(b"\r", b"")  # hard line breaks are not data here
        qp = quopri.encodestring(flat).replace(b"\n", b"\r\n")
        assert decoded_size(qp, "quoted-printable") == len(flat)


def test_boundary_prefix_of_another_is_not_a_delimiter():
    body = b"--abc\r\n\r\none\r\n--abcdef\r\n\r\nstill one\r\n--abc--\r\n"
    assert multipart_children(body, b"abc") == [b"\r\none\r\n--abcdef\r\n\r\nstill one"]


def test_missing_closing_boundary_ends_at_end_of_data():
    body = b"preamble\r\n--b\r\nContent-Type: application/pdf\r\n\r\n12345"
    assert multipart_children(body, b"b") == [b"Content-Type: application/pdf\r\n\r\n12345"]


def test_deep_nesting_is_bounded():
    data = b"x" * 10
    for i in range(200):
        data = (f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode() + data
                + f"\r\n--b{i}--\r\n".encode())
    # far beyond MAX_DEPTH: counted at raw size, no recursion error
    assert attachment_bytes(data) > 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_never_raises_on_arbitrary_bytes(data):
    assert attachment_bytes(data) >= 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"--b\r\n", b"--b--\r\n", b"Content-Type: multipart/mixed; boundary=b\r\n",
                                 b"\r\n", b"Content-Transfer-Encoding: base64\r\n", b"QUJD\r\n", b"=41\r\n",
                                 b"Content-Type: message/rfc822\r\n", b"Content-Disposition: attachment\r\n"]),
                max_size=40))
def test_fuzz_mime_like_input_never_raises(chunks):
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"".join(chunks)
    assert attachment_bytes(data) >= 0

"""Human-readable response texts, English then Vietnamese (Đ11: Vietnamese in Unicode).

Clients show the text after `NO`/`BYE` to the user (Thunderbird in an alert,
Outlook in its error dialog), so refusals users can act on carry both
languages. RFC 3501's resp-text is 7-bit; RFC 9051 §9 (IMAP4rev2) allows
UTF-8 there, and the clients we serve display it, so the Vietnamese is sent
as UTF-8 rather than stripped of its diacritics.
"""

from __future__ import annotations


def both(en: str, vi: str) -> str:
    return f"{en} / {vi}" if vi else en


GREETING = both("ready", "sẵn sàng")
LOGOUT = both("logging out", "đăng xuất")
TLS_FIRST = both(
    "use STARTTLS (or port 993) before logging in", "hãy dùng STARTTLS (hoặc cổng 993) trước khi đăng nhập"
)
SHUTDOWN = both("server shutting down; reconnect shortly", "máy chủ đang khởi động lại; hãy kết nối lại sau ít phút")
IDLE_TIMEOUT = both("idle for too long; logging out", "không hoạt động quá lâu; tự động đăng xuất")
TOO_MANY_BAD = both("too many invalid commands; closing", "quá nhiều lệnh không hợp lệ; đóng kết nối")
TOOBIG = both("the message is larger than the limit (APPENDLIMIT)", "thư vượt quá kích thước cho phép")
LITERAL_TOO_BIG = both("data too large; closing", "dữ liệu quá lớn; đóng kết nối")
LOGIN_OK = both("logged in", "đăng nhập thành công")
NO_SUCH_FOLDER = both("no such folder", "không có thư mục này")

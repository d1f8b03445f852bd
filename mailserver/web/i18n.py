"""The web page's words, in Vietnamese (the default, Đ11: Unicode Vietnamese) and English.

Every visible string lives here as (Vietnamese, English), so a translator
reads one table and a missing translation is a KeyError in the tests rather
than an English word on a Vietnamese page. Texts of rules (Đ9 violations,
lock-state reasons, brute-force blocks) come bilingual from `policy` and
`storage`; they are not repeated here.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from policy.units import format_size

Lang = Literal["vi", "en"]
LANGS: tuple[Lang, ...] = ("vi", "en")
DEFAULT_LANG: Lang = "vi"

TEXTS: dict[str, tuple[str, str]] = {
    "site": ("Thư điện tử công vụ tỉnh Phú Yên", "Phú Yên provincial government mail"),
    "account_title": ("Tài khoản thư điện tử", "Your mail account"),
    "switch_to": ("English", "Tiếng Việt"),
    "regulation": (
        "Theo Quy chế ban hành kèm Quyết định 13/2020/QĐ-UBND của UBND tỉnh Phú Yên",
        "Under the regulation of Decision 13/2020/QĐ-UBND of Phú Yên People's Committee",
    ),
    # sign-in
    "signin_title": ("Đăng nhập", "Sign in"),
    "signin_intro": (
        "Đăng nhập để đổi mật khẩu, xem dung lượng và trạng thái hộp thư.",
        "Sign in to change your password and see your mailbox quota and state.",
    ),
    "address": ("Địa chỉ thư điện tử", "Email address"),
    "password": ("Mật khẩu", "Password"),
    "signin_button": ("Đăng nhập", "Sign in"),
    "signout_button": ("Đăng xuất", "Sign out"),
    "signed_out": ("Bạn đã đăng xuất.", "You have signed out."),
    "session_expired": (
        "Phiên làm việc đã hết hạn, vui lòng đăng nhập lại.",
        "Your session has expired; please sign in again.",
    ),
    "lost_password": (
        "Quên mật khẩu? Liên hệ Sở Thông tin và Truyền thông để được cấp lại (Điều 13.3).",
        "Lost your password? Ask the Department of Information and Communications to reset it (Article 13.3).",
    ),
    # account status
    "status_title": ("Hộp thư của bạn", "Your mailbox"),
    "name": ("Họ và tên", "Name"),
    "unit": ("Đơn vị", "Unit"),
    "state": ("Trạng thái", "State"),
    "state_active": ("Đang hoạt động", "Active"),
    "state_send-locked": ("Đã khóa chức năng gửi thư", "Sending locked"),
    "state_suspended": ("Tạm khóa", "Suspended"),
    "state_revoked": ("Đã thu hồi", "Revoked"),
    "send_lock_on": ("Khóa gửi thư từ ngày {date}", "Sending is locked from {date}"),
    "revoke_on": ("Thu hồi hộp thư vào ngày {date}", "The mailbox will be revoked on {date}"),
    "quota": ("Dung lượng", "Quota"),
    "quota_used": ("Đã dùng {used} trên {quota} ({percent})", "{used} of {quota} used ({percent})"),
    "password_age": ("Mật khẩu đổi lần cuối", "Password last changed"),
    "days_ago": ("{date} ({days} ngày trước)", "{date} ({days} days ago)"),
    "password_expires": ("Mật khẩu hết hạn", "Password expires"),
    "days_left": ("{date} (còn {days} ngày)", "{date} ({days} days left)"),
    "expired_on": ("{date} (đã hết hạn)", "{date} (expired)"),
    "change_now": ("Ngay bây giờ: đây là mật khẩu tạm thời", "Now: this is a temporary password"),
    # forced change
    "must_change": (
        "Bạn phải đổi mật khẩu tạm thời trước khi sử dụng hộp thư (Điều 6.3.c). "
        "Outlook và Thunderbird sẽ không đăng nhập được cho đến khi bạn đổi mật khẩu.",
        "You must change your temporary password before using your mailbox (Article 6.3.c). "
        "Outlook and Thunderbird cannot sign in until you do.",
    ),
    "expired": (
        "Mật khẩu của bạn đã hết hạn: theo Điều 13.3, mật khẩu phải được đổi mỗi tháng một lần. "
        "Outlook và Thunderbird sẽ không đăng nhập được cho đến khi bạn đổi mật khẩu.",
        "Your password has expired: Article 13.3 requires a new password every month. "
        "Outlook and Thunderbird cannot sign in until you change it.",
    ),
    # change form
    "change_title": ("Đổi mật khẩu", "Change password"),
    "current_password": ("Mật khẩu hiện tại", "Current password"),
    "new_password": ("Mật khẩu mới", "New password"),
    "confirm_password": ("Nhập lại mật khẩu mới", "New password again"),
    "rules_intro": ("Mật khẩu mới (Điều 9) phải:", "The new password (Article 9) needs:"),
    "rule_confirm": ("Hai lần nhập mật khẩu mới giống nhau", "Both new passwords are the same"),
    "rule_differs": ("Khác mật khẩu hiện tại", "Different from the current password"),
    "show_passwords": ("Hiện mật khẩu", "Show passwords"),
    "change_button": ("Đổi mật khẩu", "Change password"),
    "mismatch": ("Hai lần nhập mật khẩu mới không giống nhau", "The two new passwords differ"),
    "reuse": ("Mật khẩu mới phải khác mật khẩu hiện tại", "The new password must differ from the current one"),
    "wrong_current": ("Mật khẩu hiện tại không đúng", "The current password is wrong"),
    "changed": (
        "Đã đổi mật khẩu. Mật khẩu mới có hiệu lực ngay cho Outlook, Thunderbird và trang này; "
        "hãy nhập mật khẩu mới trên mọi máy của bạn.",
        "Your password has been changed. The new password works at once in Outlook, Thunderbird and here; "
        "enter it on each of your devices.",
    ),
    "errors_title": ("Chưa đổi được mật khẩu:", "The password was not changed:"),
    # client setup
    "setup_title": ("Cài đặt Outlook, Thunderbird", "Setting up Outlook or Thunderbird"),
    "setup_intro": (
        "Outlook và Thunderbird tự tìm thông số khi bạn nhập địa chỉ thư. Nếu cần nhập tay:",
        "Outlook and Thunderbird find these settings from your address. To enter them by hand:",
    ),
    "setup_incoming": ("Thư đến (IMAP)", "Incoming (IMAP)"),
    "setup_outgoing": ("Thư đi (SMTP)", "Outgoing (SMTP)"),
    "setup_username": ("Tên đăng nhập: địa chỉ thư đầy đủ", "User name: your full email address"),
    "SSL": ("SSL/TLS", "SSL/TLS"),
    "STARTTLS": ("STARTTLS", "STARTTLS"),
    # errors
    "csrf": (
        "Biểu mẫu đã cũ hoặc không hợp lệ. Hãy tải lại trang và thử lại.",
        "The form is stale or invalid. Reload the page and try again.",
    ),
    "not_found": ("Không tìm thấy trang.", "Page not found."),
    "back": ("Về trang tài khoản", "Back to your account"),
}


def t(lang: Lang, key: str, **values: object) -> str:
    vi, en = TEXTS[key]
    text = vi if lang == "vi" else en
    return text.format(**values) if values else text


def pick(lang: Lang, vi: str, en: str) -> str:
    """Choose between the two halves of a bilingual text from policy or storage."""
    return vi if lang == "vi" else en


def fmt_date(lang: Lang, day: date | datetime) -> str:
    """Vietnamese writes dates day/month/year; English pages use ISO 8601."""
    return f"{day:%d/%m/%Y}" if lang == "vi" else f"{day:%Y-%m-%d}"


def _decimal(lang: Lang, text: str) -> str:
    return text.replace(".", ",") if lang == "vi" else text  # Vietnamese writes a decimal comma


def fmt_percent(lang: Lang, value: float) -> str:
    return _decimal(lang, f"{value:.1f} %")


def fmt_size(lang: Lang, n: int) -> str:
    return _decimal(lang, format_size(n))

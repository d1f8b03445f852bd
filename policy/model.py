"""The regulation's numbers as a typed model (`policy.yaml`).

Every figure of Decision 13/2020/QĐ-UBND lives here with its default, so the
server runs correctly with no policy file at all and operators only write what
they change. Unknown keys are errors (`extra="forbid"`): a misspelt key that
was silently ignored would leave the province on a default nobody chose.
"""

from __future__ import annotations

from datetime import date
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policy.spam import normalise_list_key, normalise_sender_entry
from policy.units import ByteSize, CalendarDuration, Duration, parse_duration


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _lead_times(v: list[CalendarDuration]) -> list[CalendarDuration]:
    """Warning lead times: positive, longest first (the order they fall due)."""
    for d in v:
        if d.approx_seconds <= 0:
            raise ValueError(f'"{d}" is not a lead time (it must be longer than 0)')
    return sorted(set(v), reverse=True)


class AttachmentPolicy(Section):
    # Đ7.3.b: "kích cỡ tệp gửi kèm tối đa 15MB/thư". 15 MiB is the generous reading.
    max_total: ByteSize = 15 * 1024**2
    # Room for the text body and headers on top of the encoded attachments.
    message_overhead: ByteSize = 1024**2
    # The SMTP SIZE / IMAP APPENDLIMIT; null derives it from max_total (base64 grows data by a third).
    message_size_limit: ByteSize | None = None


class QuotaPolicy(Section):
    # Đ7.3.b: at least 2 GB per mailbox; also the floor for `set-quota`.
    default: ByteSize = 2 * 1024**3
    # Đ7.3.c: warn once when usage crosses each threshold (percent of quota).
    warn_percent: list[int] = Field(default_factory=lambda: [90, 95])
    # What SMTP answers a recipient that is over quota: reject (552 5.2.2) or tempfail (452 4.2.2).
    over_quota: Literal["reject", "tempfail"] = "reject"

    @field_validator("warn_percent")
    @classmethod
    def _percent_range(cls, v: list[int]) -> list[int]:
        for p in v:
            if not 1 <= p <= 100:
                raise ValueError(f"{p} is not a percentage between 1 and 100")
        return sorted(v)


class HashPolicy(Section):
    # argon2id cost: OWASP's recommended m=19 MiB, t=2, p=1 (~35 ms on one
    # core here). Verification runs off the event loop, and the
    # authentication cache keeps reconnecting clients from paying it each time.
    scheme: Literal["argon2", "bcrypt", "sha512_crypt"] = "argon2"
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_cost_kib: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)


class PasswordPolicy(Section):
    # Đ9: at least 8 characters with upper, lower, digit and one of ! @ # % $ * &.
    min_length: int = Field(default=8, ge=1)
    max_length: int = Field(default=128, ge=8)
    require_upper: bool = True
    require_lower: bool = True
    require_digit: bool = True
    require_special: bool = True
    special_characters: str = "!@#%$*&"
    # Đ13.3: "định kỳ 01 tháng thay đổi mật khẩu một lần".
    max_age: Duration = CalendarDuration(months=1)
    # Warnings delivered into the mailbox before expiry (operations jobs).
    expiry_warnings: list[Duration] = Field(
        default_factory=lambda: [parse_duration(d) for d in ("7 days", "3 days", "1 day")]
    )
    # Length of the temporary passwords the CLI generates (Đ6.3.b).
    temporary_length: int = Field(default=14, ge=8)
    hashing: HashPolicy = HashPolicy()

    @field_validator("expiry_warnings")
    @classmethod
    def _positive_expiry_warnings(cls, v: list[CalendarDuration]) -> list[CalendarDuration]:
        return _lead_times(v)


class RoleSchedule(Section):
    send_lock_after: Duration
    revoke_after: Duration


class RetirementPolicy(Section):
    # Đ5.3.b: head of division and below: sending locked at once, revoked after 6 months.
    staff: RoleSchedule = RoleSchedule(
        send_lock_after=CalendarDuration(), revoke_after=CalendarDuration(months=6)
    )
    # Đ5.3.b: department/district leaders and above: locked after 1 month, revoked after 12.
    leader: RoleSchedule = RoleSchedule(
        send_lock_after=CalendarDuration(months=1), revoke_after=CalendarDuration(months=12)
    )
    # A revoked mailbox is archived, not deleted; the archive is kept this long.
    archive_keep: Duration = CalendarDuration(months=60)
    # A revoked address may not be given to a new person before this has passed.
    address_reuse_after: Duration = CalendarDuration(months=12)
    # Notices put into the leaving person's mailbox (copied to the unit mailbox) this long before
    # revocation, so the mail worth keeping is saved first (Đ13.4: users keep their own data).
    revoke_warnings: list[Duration] = Field(
        default_factory=lambda: [parse_duration(d) for d in ("30 days", "7 days")]
    )

    @field_validator("revoke_warnings")
    @classmethod
    def _positive_revoke_warnings(cls, v: list[CalendarDuration]) -> list[CalendarDuration]:
        return _lead_times(v)


class InactivityPolicy(Section):
    # Đ6.2.a: no sending or receiving for 6 months, without a reason given: suspend.
    suspend_after: Duration = CalendarDuration(months=6)
    activities: list[Literal["send", "receive", "login"]] = Field(
        default_factory=lambda: ["send", "receive", "login"]
    )
    # Notices to the user and the unit mailbox this long before the suspension, so that the unit
    # can give the reason the article asks for ("mà không thông báo lý do") in time.
    warnings: list[Duration] = Field(default_factory=lambda: [parse_duration("14 days")])

    @field_validator("warnings")
    @classmethod
    def _positive_warnings(cls, v: list[CalendarDuration]) -> list[CalendarDuration]:
        return _lead_times(v)


class LogPolicy(Section):
    # Đ7.2: the log of sending, receiving and errors is kept 6 months.
    mail_log_retention: Duration = CalendarDuration(months=6)
    system_log_retention: Duration = CalendarDuration(months=6)
    # Operator actions are evidence for longer than the traffic log.
    audit_retention: Duration = CalendarDuration(months=60)
    # Daily counters per account and unit (sent, received, refused, virus, spam, storage) outlive the
    # raw logs: the Đ12.9 / Đ14.1.c / Đ14.3.đ reports need 12 months and year-on-year comparisons.
    counter_retention: Duration = CalendarDuration(months=60)


class MaintenancePolicy(Section):
    # Đ8.1.c: users are told at least 3 working days before planned downtime.
    user_notice_working_days: int = Field(default=3, ge=0)
    # Đ8.2.c: the provider tells the operators 1 working day before.
    provider_notice_working_days: int = Field(default=1, ge=0)
    # A reminder goes to every mailbox this many calendar days before the start day (0: none).
    reminder_days_before: int = Field(default=1, ge=0)


class CalendarPolicy(Section):
    # Public holidays (Tết and others) that are not working days; the
    # government publishes them yearly, so operators keep this list current.
    holidays: list[date] = Field(default_factory=list)
    # Saturdays announced as make-up working days.
    working_saturdays: list[date] = Field(default_factory=list)


class FolderNames(Section):
    # RFC 6154 special-use folders created with every mailbox. An
    # Outlook-heavy unit may prefer "Sent Items", "Deleted Items", "Junk E-mail".
    sent: str = "Sent"
    drafts: str = "Drafts"
    trash: str = "Trash"
    junk: str = "Junk"
    archive: str = "Archive"


class FolderRetentionPolicy(Section):
    # Đ8.2.b "tạo lập chế độ xóa bỏ, lưu trữ": messages that have been in Trash or Junk longer than
    # this are expunged by the daily job (null keeps them). The folders are those named in `folders:`
    # and any folder a client marked \\Trash or \\Junk (RFC 6154).
    trash: Duration | None = CalendarDuration(seconds=30 * 86400)
    junk: Duration | None = CalendarDuration(seconds=30 * 86400)
    # Other folders by name, e.g. {"Thông báo": 1 year}. Never INBOX.
    folders: dict[str, Duration] = Field(default_factory=dict)

    @field_validator("folders")
    @classmethod
    def _not_inbox(cls, v: dict[str, CalendarDuration]) -> dict[str, CalendarDuration]:
        for name, keep in v.items():
            if name.strip().upper() == "INBOX":
                raise ValueError("INBOX has no retention: mail there is the user's to keep (Đ13.4)")
            if keep.approx_seconds <= 0:
                raise ValueError(f'"{name}": the retention must be longer than 0')
        return v


class AuthPolicy(Section):
    # Brute-force limiter shared by SMTP, IMAP and the web. A repeated identical
    # wrong password (a phone retrying last month's password) counts once.
    window: Duration = CalendarDuration(seconds=15 * 60)
    max_failures_per_ip_account: int = Field(default=5, ge=1)
    max_failures_per_ip: int = Field(default=30, ge=1)
    max_failures_per_account: int = Field(default=50, ge=1)
    cooling_off: Duration = CalendarDuration(seconds=15 * 60)
    # Successful verifications are remembered this long (in memory only).
    cache_ttl: Duration = CalendarDuration(seconds=60 * 60)


class VirusPolicy(Section):
    # Đ8.2.b: every message is scanned by clamd before it is accepted. When
    # clamd cannot answer: "tempfail" (451 4.7.1, the sender retries, nothing
    # is lost) or "accept" (fail-open: the message is accepted unscanned and
    # the mail log says so).
    on_scanner_error: Literal["tempfail", "accept"] = "tempfail"


class DmarcPolicy(Section):
    # A message failing DMARC whose domain publishes p=reject is refused
    # (550 5.7.1) when true; otherwise it is delivered with the result recorded.
    enforce_reject: bool = True
    # p=quarantine failures are delivered into the Junk folder when true.
    quarantine_to_junk: bool = True


class SendingPolicy(Section):
    # Đ6.2.b: a compromised account shows as a sudden burst of outbound mail.
    # Per account, within `window`; an operator may grant a unit's clerk more
    # (`mailserver account set-send-limit`).
    window: Duration = CalendarDuration(seconds=3600)
    messages_per_window: int = Field(default=100, ge=1)
    recipients_per_window: int = Field(default=300, ge=1)
    # A sustained burst: after this many messages refused for the limit within
    # the window, the account's outbound mail is put on hold, audited and
    # postmaster@ is told. Suspension stays an operator's decision.
    hold_after_refusals: int = Field(default=20, ge=1)


class OutboundPolicy(Section):
    # Waits between delivery attempts after a temporary failure (4xx, no
    # connection); the last one repeats. RFC 5321 §4.5.4.1 asks retries to be
    # spaced; about 5 minutes growing to 4 hours.
    retry_schedule: list[Duration] = Field(
        default_factory=lambda: [parse_duration(d) for d in (
            "5 minutes", "10 minutes", "20 minutes", "40 minutes", "80 minutes", "160 minutes", "4 hours")]
    )
    # Give up and return the message to its sender this long after it was
    # queued (RFC 5321 §4.5.4.1: "at least 4-5 days").
    give_up_after: Duration = CalendarDuration(seconds=5 * 86400)
    # Tell the sender once that a message is still waiting after this long.
    delay_notice_after: Duration = CalendarDuration(seconds=4 * 3600)
    # Domains whose mail must travel encrypted: no STARTTLS, no delivery (the
    # message waits and is retried). Other domains get TLS when offered.
    require_tls: list[str] = Field(default_factory=list)

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, v: list[CalendarDuration]) -> list[CalendarDuration]:
        if not v:
            raise ValueError("the retry schedule needs at least one wait")
        for d in v:
            if d.months or d.seconds < 60:
                raise ValueError(f"{d} is not a retry wait (use minutes or hours, at least 1 minute)")
        return v

    @field_validator("require_tls")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        return [d.strip().rstrip(".").lower() for d in v]

    def retry_wait(self, attempts: int) -> CalendarDuration:
        """The wait after the `attempts`-th failed attempt (1-based); the last wait repeats."""
        return self.retry_schedule[min(max(attempts, 1), len(self.retry_schedule)) - 1]

    def tls_required(self, domain: str) -> bool:
        return domain.lower() in self.require_tls
class SpamPolicy(Section):
    # Đ8.2.b: SpamAssassin (spamd) scores every message received on the MX.
    # At or above `junk` it is delivered into the recipient's Junk folder with
    # X-Spam-Flag/X-Spam-Score/X-Spam-Status headers; at or above `reject` it
    # is refused at DATA with 550 5.7.1 and nothing is stored.
    junk: float = 5.0
    reject: float = 15.0
    # Đ13.6: no spam leaves the province. Submitted mail at or above this is
    # refused (550 5.7.1), logged, and counted toward the Đ6.2.b hold of a
    # compromised account (sending.hold_after_refusals). SpamAssassin's own
    # definition of spam is 5.0.
    outbound_reject: float = 5.0
    # spamd down or too slow: "accept" delivers unscored with
    # `X-Spam-Status: Unscored` (mail keeps flowing; /healthz fails), or
    # "tempfail" answers 451 4.7.1 so the sender retries.
    on_spamd_error: Literal["accept", "tempfail"] = "accept"
    # Only the first bytes of a larger message are scored (SpamAssassin reads
    # ~50 KB of each body part anyway; a 20 MB attachment would only cost time).
    max_scan_size: ByteSize = 512 * 1024
    # Allow and block lists. Keys: "*" (every mailbox), a domain served here
    # (every mailbox in it) or one mailbox address; values: sender addresses
    # or domains (a domain covers its subdomains). The most specific key
    # decides; at one level a block beats an allow. Allowed: INBOX without a
    # score. Blocked: refused (550 5.7.1), or Junk when other recipients of
    # the same message do not block it. An allow entry is ignored when the
    # message fails SPF or DMARC, so a forged sender cannot use it.
    allow: dict[str, list[str]] = Field(default_factory=dict)
    block: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("allow", "block")
    @classmethod
    def _lists(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, entries in v.items():
            k = normalise_list_key(str(key))
            out.setdefault(k, []).extend(normalise_sender_entry(str(e)) for e in entries or [])
        return out

    @model_validator(mode="after")
    def _thresholds(self) -> SpamPolicy:
        if self.reject < self.junk:
            raise ValueError(f"reject ({self.reject:g}) is below junk ({self.junk:g})")
        return self


class SpecialFolderNames(Section):
    # Names an old server gives its special folders when it does not mark them
    # with RFC 6154 SPECIAL-USE (compared without case and diacritics): Outlook
    # and Exchange, Zimbra, Thunderbird, Gmail and Vietnamese-localised servers.
    sent: list[str] = Field(default_factory=lambda: [
        "Sent", "Sent Items", "Sent Messages", "Sent Mail", "Thư đã gửi", "Đã gửi", "Hộp thư đi"])
    drafts: list[str] = Field(default_factory=lambda: ["Drafts", "Draft", "Thư nháp", "Nháp"])
    trash: list[str] = Field(default_factory=lambda: [
        "Trash", "Deleted Items", "Deleted Messages", "Bin", "Thùng rác", "Thư đã xóa", "Đã xóa"])
    junk: list[str] = Field(default_factory=lambda: [
        "Junk", "Junk E-mail", "Junk Email", "Spam", "Bulk Mail", "Thư rác"])
    archive: list[str] = Field(default_factory=lambda: ["Archive", "Archives", "Lưu trữ"])


class MigrationPolicy(Section):
    # Đ8.2.d: mail brought over from the unit's old system. It was accepted
    # there once, so a message whose attachments exceed attachments.max_total
    # (Đ7.3.b) is still imported and listed in the migration report. Only a
    # message larger than this (the whole message) is not imported: it is
    # reported as failed, and a later run retries it once this is raised.
    max_message_size: ByteSize = 100 * 1024**2
    # Room a migration may use beyond the mailbox quota (Đ7.3.b), in percent of
    # the quota. 0: the quota is strict. A mailbox that would go beyond quota
    # + allowance stops with a report naming what is missing; nothing is dropped.
    quota_allowance_percent: int = Field(default=0, ge=0, le=100)
    # Messages and bytes per batch read from the old server and committed to
    # the store together (one transaction and one fsync per folder and batch).
    batch_messages: int = Field(default=100, ge=1, le=5000)
    batch_bytes: ByteSize = 16 * 1024**2
    special_folders: SpecialFolderNames = SpecialFolderNames()


class Policy(Section):
    # All calendar rules are evaluated in this time zone.
    timezone: str = "Asia/Ho_Chi_Minh"
    attachments: AttachmentPolicy = AttachmentPolicy()
    quota: QuotaPolicy = QuotaPolicy()
    passwords: PasswordPolicy = PasswordPolicy()
    retirement: RetirementPolicy = RetirementPolicy()
    inactivity: InactivityPolicy = InactivityPolicy()
    logs: LogPolicy = LogPolicy()
    maintenance: MaintenancePolicy = MaintenancePolicy()
    calendar: CalendarPolicy = CalendarPolicy()
    folders: FolderNames = FolderNames()
    folder_retention: FolderRetentionPolicy = FolderRetentionPolicy()
    auth: AuthPolicy = AuthPolicy()
    virus: VirusPolicy = VirusPolicy()
    dmarc: DmarcPolicy = DmarcPolicy()
    sending: SendingPolicy = SendingPolicy()
    outbound: OutboundPolicy = OutboundPolicy()
    spam: SpamPolicy = SpamPolicy()
    migration: MigrationPolicy = MigrationPolicy()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f'"{v}" is not a known time zone') from e
        return v

    @model_validator(mode="after")
    def _password_lengths(self) -> Policy:
        if self.passwords.max_length < self.passwords.min_length:
            raise ValueError("passwords.max_length is below passwords.min_length")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

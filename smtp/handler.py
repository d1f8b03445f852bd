"""aiosmtpd hooks: run the checks, add trace headers, sign, deliver through the store or queue, log every event.

A message is acknowledged with 250 only after the store has it durably on
disk (the store fsyncs the file and the directory before `deliver_many`
returns) and, for recipients elsewhere, after the outbound queue has it
(message file and rows fsynced, `storage.queue`); any failure before that
is a 4xx the sender retries. When some
recipients' quotas turn out too small after DATA, the others get the
message and the sender gets a DSN (RFC 3464) naming the ones that did not.
"""

from __future__ import annotations

import logging
from typing import Any

from smtp import checks
from smtp.addresses import domain_of
from smtp.checks import Recipient, Step
from smtp.dsn import Failure, Report, build_dsn
from smtp.headers import (
    authentication_results,
    decoded_subject,
    header_value,
    protocol_name,
    received,
    return_path,
    split_message,
    strip_forged,
    without_return_path,
)
from smtp.ids import new_queue_id
from smtp.protocol import MailEnvelope, MailSession, MailSMTP
from smtp.replies import Reply
from smtp.services import Services
from smtp.spam import spam_headers, strip_spam_headers
from storage.auth import Outcome
from storage.errors import FolderNotFound, StoreUnavailable
from storage.queue import NewEntry
from storage.store import to_crlf

log = logging.getLogger("smtp.handler")

class Handler:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    # ------------------------------------------------------------------ logging

    def _log(self, event: str, session: MailSession, envelope: MailEnvelope | None = None, **fields: Any) -> None:
        account = session.account.address if session.account is not None else None
        self.svc.maillog.event(
            event,
            queue_id=envelope.queue_id if envelope is not None and envelope.queue_id else None,
            sender=envelope.mail_from if envelope is not None and envelope.mail_from is not None else None,
            client_ip=session.client_ip or None,
            account=account,
            listener=session.listener,
            **fields,
        )

    def _refused(self, session: MailSession, envelope: MailEnvelope, reply: Reply, stage: str, **fields: Any) -> str:
        event = "deferred" if reply.temporary else "rejected"
        self._log(event, session, envelope, stage=stage, code=f"{reply.code} {reply.enhanced}",
                  reason=reply.text, result=event, **fields)
        return str(reply)

    # ------------------------------------------------------------------ connection, AUTH

    async def handle_EHLO(self, server: MailSMTP, session: MailSession, envelope: MailEnvelope, hostname: str,
                          responses: list[str]) -> list[str]:
        if not getattr(session, "_logged_connect", False):
            session._logged_connect = True  # type: ignore[attr-defined]
            self._log("connect", session, helo=hostname, tls=session.tls_info)
        return responses

    async def authenticate(self, server: MailSMTP, mechanism: str, user: str, password: str) -> tuple[bool, str]:
        """SMTP AUTH through the foundation's AuthService; outcomes map to RFC 4954 §6 replies."""
        session: MailSession = server.session  # type: ignore[assignment]
        result = await self.svc.auth.authenticate(user, password, client_ip=session.client_ip, protocol="smtp")
        self.svc.maillog.event("auth", account=user.strip().lower(), client_ip=session.client_ip,
                               listener=session.listener, mechanism=mechanism, result=result.outcome.value)
        if result.ok:
            session.account = result.account
            return True, ""
        if result.outcome == Outcome.blocked:
            return False, f"421 4.7.0 {result.text}"
        if result.outcome in (Outcome.suspended, Outcome.revoked):
            return False, f"535 5.7.8 Login refused: {result.text}"
        if result.outcome in (Outcome.must_change, Outcome.password_expired):
            return False, f"535 5.7.8 Login refused: {result.text}"
        return False, f"535 5.7.8 Authentication failed: {result.text}"

    # ------------------------------------------------------------------ MAIL, RCPT

    async def handle_MAIL(self, server: MailSMTP, session: MailSession, envelope: MailEnvelope, address: str,
                          mail_options: list[str]) -> str:
        envelope.queue_id = new_queue_id()
        for opt in mail_options:
            if opt.upper().startswith("SIZE="):
                try:
                    envelope.declared_size = int(opt[5:])
                except ValueError:
                    return "501 5.5.4 SIZE= needs a number"
        st = Step(self.svc, session, envelope, address="" if address == "<>" else address)
        reply = await checks.run(checks.MAIL_CHECKS, st)
        if reply is not None:
            envelope.mail_from = address  # for the log line only
            text = self._refused(session, envelope, reply, "mail", check=st.notes.get("check"))
            envelope.mail_from = None
            envelope.queue_id = ""
            return text
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: MailSMTP, session: MailSession, envelope: MailEnvelope, address: str,
                          rcpt_options: list[str]) -> str:
        st = Step(self.svc, session, envelope, address=address)
        reply = await checks.run(checks.RCPT_CHECKS, st)
        if reply is not None:
            return self._refused(session, envelope, reply, "rcpt", recipients=[address], check=st.notes.get("check"))
        assert st.recipient is not None
        envelope.rcpt_tos.append(st.recipient.address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.recipients.append(st.recipient)
        return "250 2.1.5 Recipient OK"

    # ------------------------------------------------------------------ DATA

    async def handle_DATA(self, server: MailSMTP, session: MailSession, envelope: MailEnvelope) -> str:
        # RFC 5321 §2.3.8: lines end in CRLF; one form before scoring, signing, storing and sending on
        content: bytes = to_crlf(envelope.content)  # type: ignore[arg-type]
        st = Step(self.svc, session, envelope, content=content, received=self._received(server, session, envelope))
        head, _ = split_message(content)
        message_id = header_value(head, "Message-ID")
        common = {"message_id": message_id, "recipients": list(envelope.rcpt_tos), "size": len(content)}
        reply = await checks.run(checks.DATA_CHECKS, st)
        spam_fields = st.spam.log_fields() if st.spam is not None else {}
        if reply is not None:
            if "virus" in st.notes:
                self._log("virus", session, envelope, signature=st.notes["virus"], **common)
            return self._refused(session, envelope, reply, "data", check=st.notes.get("check"), **common,
                                 **spam_fields)
        message = self._with_trace_headers(envelope, content, st)
        if st.submission:
            domain = domain_of(envelope.sender)
            signature = await self.svc.signer.sign(message, domain)
            message = signature + message
        self._log("accepted", session, envelope, scan=st.notes.get("scan"), **common, **spam_fields,
                  auth=st.auth_results.header("").lstrip(";\r\n\t ") if st.auth_results else None)
        return await self._deliver(session, envelope, message, st, common)

    def _received(self, server: MailSMTP, session: MailSession, envelope: MailEnvelope) -> bytes:
        """Our RFC 5321 §4.4 time stamp line: built before the checks, because spamd reads it too."""
        svc = self.svc
        proto = protocol_name(session.extended_smtp, server.is_tls, session.account is not None,
                              bool(envelope.smtp_utf8))
        single = envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None
        return received(helo=session.host_name or "", client_ip=session.client_ip, hostname=svc.settings.hostname,
                        protocol=proto, queue_id=envelope.queue_id, tls=session.tls_info, recipient=single,
                        when=svc.clock().astimezone(svc.policy.tz))

    def _with_trace_headers(self, envelope: MailEnvelope, content: bytes, st: Step) -> bytes:
        svc = self.svc
        if not st.submission:
            content = strip_spam_headers(strip_forged(content, svc.settings.hostname))
        top = return_path(envelope.sender)
        if st.auth_results is not None:
            top += authentication_results(st.auth_results.header(svc.settings.hostname))
        top += st.received
        if st.spam is not None and not st.submission:
            # Đ8.2.b: the verdict on received mail, for the recipient's client; submitted mail leaves
            # without one (an "Unscored" note would only tell other organisations our spamd was down)
            top += spam_headers(st.spam, svc.policy.spam.junk)
        return top + content

    async def _deliver(self, session: MailSession, envelope: MailEnvelope, message: bytes, st: Step,
                       common: dict[str, Any]) -> str:
        """Remote recipients (and everything of a held account) into the queue, local ones into the store;
        250 only when both are on disk. The queue goes first: if the store then fails, the local
        recipients join the queued message instead of the sender sending it all again, which would
        repeat the remote deliveries."""
        svc = self.svc
        local = [rcpt for rcpt in envelope.recipients if rcpt.accounts]
        remote = list(dict.fromkeys(a for rcpt in envelope.recipients for a in rcpt.remote))
        queued = False
        if remote or (envelope.hold and local):
            held_local = [rcpt.address for rcpt in local] if envelope.hold else []
            try:
                await self._enqueue(session, envelope, message, remote, held_local, common)
            except Exception as e:
                log.exception("queueing %s failed", envelope.queue_id)
                reply = Reply(451, "4.3.0", f"Temporary failure queueing the message ({e.__class__.__name__}); "
                                            "please try again later")
                return self._refused(session, envelope, reply, "queue", **common)
            queued = True
            if envelope.hold:
                local = []  # Đ6.2.b: they wait in the queue with the rest
        accounts = {a.id: a for rcpt in local for a in rcpt.accounts}
        failed: dict[int, Any] = {}
        if accounts:
            folders = self._folders(st, accounts)
            try:
                results = await self._store(accounts, message, folders)
            except Exception as e:
                log.exception("delivery of %s failed", envelope.queue_id)
                if not queued:
                    reply = Reply(451, "4.3.0", f"Temporary failure storing the message ({e.__class__.__name__}); "
                                                "please try again later")
                    return self._refused(session, envelope, reply, "deliver", **common)
                await svc.queue.add_recipients(envelope.queue_id, [rcpt.address for rcpt in local], local=True)
                self._log("queued", session, envelope, message_id=common["message_id"],
                          recipients=[rcpt.address for rcpt in local], result="queued",
                          reason=f"the mail store failed ({e.__class__.__name__}); the queue retries")
                results = {}
            failed = {aid: res for aid, res in results.items() if isinstance(res, BaseException)}
            delivered = [aid for aid in results if aid not in failed]
            for aid in delivered:
                self._log("delivered", session, envelope, message_id=common["message_id"],
                          recipients=[accounts[aid].address], size=len(message), folder=folders[aid],
                          result="delivered")
            self._log_junk(session, envelope, st, [accounts[aid] for aid in delivered], common)
            if not delivered and failed and not queued:
                return self._all_failed(session, envelope, failed, accounts, common)
        if st.submission:
            svc.rates.record_sent(session.account.id, len(envelope.rcpt_tos))
            await svc.directory.record_activity(session.account.id, "send")
        if failed:
            await self._bounce(session, envelope, message, failed, accounts, common)
        if envelope.hold:
            return f"250 2.0.0 OK queued as {envelope.queue_id}; held for review (Article 6.2.b)"
        return f"250 2.0.0 OK queued as {envelope.queue_id}"

    def _folders(self, st: Step, accounts: dict[int, Any]) -> dict[int, str]:
        """Each recipient's folder: Junk for spam (per recipient, smtp/spam.py) and for a DMARC failure
        under p=quarantine (`dmarc.quarantine_to_junk`), INBOX otherwise."""
        svc = self.svc
        folder = "INBOX"
        r = st.auth_results
        if (r is not None and r.dmarc == "fail" and r.dmarc_policy == "quarantine"
                and svc.policy.dmarc.quarantine_to_junk):
            folder = svc.policy.folders.junk
        junk = st.spam.junk if st.spam is not None else {}
        return {aid: junk.get(aid, folder) for aid in accounts}

    async def _store(self, accounts: dict[int, Any], message: bytes, folders: dict[int, str]) -> dict[int, Any]:
        """`deliver_many` once per folder (usually one): one written file per folder, linked to each.
        A failure raises only while nobody has the message yet (the sender retries it all); after that
        the recipients of the failed folder fail alone, so a retry cannot duplicate it for the others."""
        by_folder: dict[str, list[Any]] = {}
        for aid, account in accounts.items():
            by_folder.setdefault(folders[aid], []).append(account)
        results: dict[int, Any] = {}
        for folder, group in by_folder.items():
            try:
                results.update(await self._deliver_into(folder, group, message))
            except Exception as e:
                if not results:
                    raise
                log.exception("delivery into %s failed after other recipients got the message", folder)
                error = StoreUnavailable("store", f"could not store the message: {e.__class__.__name__}")
                results.update({a.id: error for a in group})
        return results

    async def _deliver_into(self, folder: str, accounts: list[Any], message: bytes) -> dict[int, Any]:
        """A user may have deleted Junk in Thunderbird: the store recreates the special folders
        (`create_mailbox` is idempotent) and the message goes there after all, rather than the
        sender being told to retry for days."""
        store = self.svc.store
        results = await store.deliver_many(accounts, message, folder=folder)
        missing = [a for a in accounts if isinstance(results.get(a.id), FolderNotFound)]
        if missing and folder != "INBOX":
            for account in missing:
                await store.create_mailbox(account)
            results.update(await store.deliver_many(missing, message, folder=folder))
        return results

    def _log_junk(self, session: MailSession, envelope: MailEnvelope, st: Step, delivered: list[Any],
                  common: dict[str, Any]) -> None:
        """One `spam` event naming the recipients who got the message in Junk because of the filter
        (the operations counters count them per account: Đ8.2.b reports)."""
        spam = st.spam
        if spam is None or not spam.junk:
            return
        junked = [a.address for a in delivered if a.id in spam.junk]
        if junked:
            self._log("spam", session, envelope, message_id=common["message_id"], recipients=junked,
                      result="junk", **spam.log_fields())

    async def _enqueue(self, session: MailSession, envelope: MailEnvelope, message: bytes, remote: list[str],
                       held_local: list[str], common: dict[str, Any]) -> None:
        """Durably into the outbound queue (file and rows fsynced) before the 250."""
        svc = self.svc
        head, _ = split_message(message)
        hold = envelope.hold
        entry = NewEntry(
            id=envelope.queue_id, sender=envelope.sender, recipients=[*remote, *held_local],
            data=without_return_path(message), arrived_at=svc.clock(),
            account=session.account.address if session.account is not None else None,
            message_id=common["message_id"], subject=decoded_subject(head), local=set(held_local),
            hold_reason=f"account on hold since {hold['held_at'][:16]}: {hold['reason']} (Article 6.2.b)"
            if hold else None,
            hold_actor=hold["actor"] if hold else None,
        )
        await svc.queue.enqueue(entry)
        self._log("queued", session, envelope, message_id=common["message_id"], recipients=entry.recipients,
                  size=len(entry.data), result="held" if hold else "queued",
                  reason=entry.hold_reason)

    def _failure_reply(self, account: Any, error: Any) -> Reply:
        used, quota = getattr(error, "used", None), getattr(error, "quota", None)
        if used is not None and quota is not None:
            return checks.over_quota_reply(self.svc, account.address, used, quota)
        return Reply(451, "4.3.0", f"Temporary failure storing the message for <{account.address}>")

    def _all_failed(self, session: MailSession, envelope: MailEnvelope, failed: dict[int, Any],
                    accounts: dict[int, Any], common: dict[str, Any]) -> str:
        """Nobody got it: one reply tells the sender (no DSN needed)."""
        replies = [self._failure_reply(accounts[aid], err) for aid, err in failed.items()]
        reply = next((r for r in replies if r.temporary), replies[0])
        return self._refused(session, envelope, reply, "deliver", **common)

    async def _bounce(self, session: MailSession, envelope: MailEnvelope, message: bytes, failed: dict[int, Any],
                      accounts: dict[int, Any], common: dict[str, Any]) -> None:
        """Đ7.3.b after DATA: the sender learns by DSN which recipients did not get the message."""
        svc = self.svc
        failures = []
        for aid, err in failed.items():
            reply = self._failure_reply(accounts[aid], err)
            failures.append(Failure(accounts[aid].address, reply.enhanced, str(reply), remote_answered=False))
            self._log("bounced", session, envelope, message_id=common["message_id"],
                      recipients=[accounts[aid].address], code=f"{reply.code} {reply.enhanced}", reason=reply.text,
                      result="bounced")
        sender = envelope.sender
        if not sender:
            return  # RFC 5321 §4.5.5: never bounce a bounce
        head, _ = split_message(message)
        now = svc.clock()
        report = Report("failed", sender, failures, envelope.queue_id, now, subject=decoded_subject(head),
                        others_delivered=True)
        text = svc.render_report(report)
        dsn = build_dsn(report, text=text, reporting_mta=svc.settings.hostname,
                        original_headers=head, now=now, from_address=f"MAILER-DAEMON@{svc.settings.primary_domain}")
        res = await svc.directory.resolve(sender)
        if res is not None and res.accounts and not res.remote:
            await svc.store.deliver_many(res.accounts, dsn, system=True)
            self._log("dsn", session, envelope, recipients=[sender], result="delivered")
            return
        # a sender elsewhere: the report leaves through the outbound queue, with the null sender
        dsn_id = new_queue_id()
        await svc.queue.enqueue(NewEntry(id=dsn_id, sender="", recipients=[sender], data=dsn, arrived_at=now,
                                         kind="dsn", subject=text[0]))
        self._log("dsn", session, envelope, recipients=[sender], result="queued", dsn_queue_id=dsn_id)

    # ------------------------------------------------------------------ misc

    async def handle_RSET(self, server: MailSMTP, session: MailSession, envelope: MailEnvelope) -> str:
        return "250 2.0.0 OK"

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session error")
        return "451 4.3.0 Internal error; please try again later"


__all__ = ["Handler", "Recipient", "new_queue_id"]

"""The regulation's calendar, run by itself: scheduled jobs (see base.py for how they are built).

| job | article | what it does |
|---|---|---|
| counters | Đ7.2, Đ12.9, Đ14.3.đ | each ended day's mail log → daily counters; mailbox sizes |
| retirement | Đ5.3.b | lock notice, revocation reminders, revocation with a verified archive |
| inactivity | Đ6.2.a | warnings, then suspension of mailboxes unused for 6 months |
| passwords | Đ13.3 | warnings 7, 3 and 1 days before a password expires |
| maintenance | Đ8.1.c | announcement, reminder and cancellation of planned downtime |
| folder-retention | Đ8.2.b | expunge Trash and Junk after 30 days (per-folder rules) |
| log-retention | Đ7.2 | delete mail and server log files older than 6 months |
| records-retention | Đ7.2 | audit log, job ledger and counters past their own retention |
"""

from mailserver.jobs.runner import JOB_NAMES, ActionResult, JobRunner, RunReport

__all__ = ["JOB_NAMES", "ActionResult", "JobRunner", "RunReport"]

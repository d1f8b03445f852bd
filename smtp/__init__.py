"""SMTP: the inbound MX, submission for staff, the message checks, the outbound queue."""

"""The IMAP server Outlook and Thunderbird use, over the mail store's public API."""

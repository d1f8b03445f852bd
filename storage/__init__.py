"""Storage: the account directory, authentication, the Maildir store and its index, quota, the mail log."""

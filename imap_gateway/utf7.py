"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3): the one implementation is `storage.mutf7`,
which the store also uses for Maildir++ folder directories."""

from storage.mutf7 import Utf7Error, decode, encode

__all__ = ["Utf7Error", "decode", "encode"]

"""Exceptions raised by ambervault.

Every exception derives from :class:`VaultError`. Where Python already has a meaning for the
situation, the exception also derives from the matching built-in, so ordinary code keeps
working: a missing key is a :class:`KeyError`, a bad argument a :class:`ValueError`, a failed
file operation an :class:`OSError`.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "ClosedError",
    "Conflict",
    "CorruptionError",
    "DatabaseBusy",
    "EncryptionUnavailableError",
    "IncompatibleFormatError",
    "InvalidArgument",
    "IoError",
    "KohakuVaultError",
    "NotFound",
    "ReadOnlyError",
    "ValueChangedError",
    "VaultError",
    "WrongKeyError",
]


class VaultError(Exception):
    """Base class of every ambervault error."""


#: Alias kept so code written for KohakuVault runs unchanged.
KohakuVaultError = VaultError


class NotFound(VaultError, KeyError):
    """The key (or column) does not exist. Also a :class:`KeyError`."""


class DatabaseBusy(VaultError):
    """Another connection held the write lock through every retry (see ``retries``/``backoff_base``)."""


class InvalidArgument(VaultError, ValueError):
    """An argument has the right type but an unacceptable value. Nothing was written."""


class IoError(VaultError, OSError):
    """The operating system refused a file operation (missing directory, disk full, ...)."""


class ReadOnlyError(IoError):
    """A write was attempted on a vault opened read-only or stored in a read-only file."""


class CorruptionError(VaultError):
    """The file is not a vault, or its contents are damaged."""


class WrongKeyError(VaultError):
    """The key does not open the file: a wrong key, a key given for a vault that is not
    encrypted, or a file that is neither. Nothing was written to the file. Deliberately not a
    :class:`CorruptionError`, so code that recreates damaged files never discards an encrypted
    vault over a mistyped key. (An encrypted file opened *without* a key cannot be told apart
    from random bytes: that is a :class:`CorruptionError` whose message mentions the key.)"""


class EncryptionUnavailableError(InvalidArgument):
    """``key=`` was given to a build of ambervault without encryption (see
    :func:`ambervault.encryption_available` and ``docs/encryption.md``). Nothing was opened or
    created: a vault asked to be encrypted is never stored as plaintext instead."""


class IncompatibleFormatError(VaultError):
    """The file was written by a newer ambervault format than this version can read."""


class ClosedError(VaultError, ValueError):
    """The vault, reader or writer was already closed. Also a :class:`ValueError`, like files."""


class ValueChangedError(VaultError):
    """A value was overwritten or deleted while a reader was reading it."""


class Conflict(VaultError):
    """A conditional write (``if_version=`` / ``if_absent=``) found the key in another state:
    another writer got there first. Nothing was written."""


class BundleError(VaultError):
    """A file given as a bundle is not one, is damaged, or was changed after it was exported
    (see :func:`ambervault.validate_bundle`). The message names what is wrong; nothing was
    imported."""

"""kohakuvault's per-handle value switches (auto-pack, headers), shared by the item vaults
(:class:`~ambervault.VectorKVault`, :class:`~ambervault.TextVault`)."""

from __future__ import annotations

from ._codec import ValueCodec


class ValueSwitches:
    """``enable_auto_pack`` / ``enable_headers`` and their kin, over a handle's codec."""

    _codec: ValueCodec
    _headers: bool

    def enable_auto_pack(self, use_pickle: bool = True) -> None:
        """Store Python values (not only bytes). ``use_pickle`` is accepted for kohakuvault
        compatibility; pickling still needs ``allow_pickle=True`` and an explicit
        :class:`~ambervault.Pickle` wrapper."""
        self._codec.auto_pack = True

    def disable_auto_pack(self) -> None:
        """Accept only bytes-like values."""
        self._codec.auto_pack = False

    def auto_pack_enabled(self) -> bool:
        """Whether Python values are packed."""
        return self._codec.auto_pack

    def enable_headers(self) -> None:
        """Recorded for kohakuvault compatibility (encodings are always kept beside values)."""
        self._headers = True

    def disable_headers(self) -> None:
        """Recorded for kohakuvault compatibility."""
        self._headers = False

    def headers_enabled(self) -> bool:
        """The value set by :meth:`enable_headers` / :meth:`disable_headers`."""
        return self._headers

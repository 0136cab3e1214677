"""Who may upload probes: Hugging Face sign-in on a Space, an allow-list of upload tokens elsewhere, off when neither is set.

Pure: the settings come in through :meth:`UploadAccess.configured`, the caller's identity as plain values, and the answer is
a user name for the audit log or a ValueError that says how uploads are enabled.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from probes_hub.config import ConfigError, setting
from probes_hub.hub.audit import check_user_name

SIGN_IN = "Sign in with Hugging Face (the button above the upload box) to upload; uploads are logged under your user name."
TOKEN_NEEDED = ("Uploads here need an upload token: give the secret the operator issued you in the token field "
                "(the server lists who may upload in PROBES_HUB_UPLOAD_TOKENS).")
OFF = ("Uploads are off on this server. On a Hugging Face Space they need Hugging Face sign-in; elsewhere the operator enables them "
       "with PROBES_HUB_UPLOAD_TOKENS=name:secret (comma-separated), and each uploader gives their secret in the token field.")


@dataclass(frozen=True)
class UploadAccess:
    """The upload rule in force: on a Space, signed-in users (optionally only ``uploaders``); elsewhere, holders of a listed token."""

    on_space: bool
    tokens: tuple[tuple[str, str], ...] = ()
    """(user name, secret) pairs."""
    uploaders: frozenset[str] | None = None
    """On a Space: the user names allowed (None: every signed-in user)."""

    @classmethod
    def configured(cls) -> UploadAccess:
        """From ``SYSTEM``, ``PROBES_HUB_UPLOAD_TOKENS`` and ``PROBES_HUB_UPLOADERS``.

        Raises:
            ConfigError: a token entry is not ``name:secret`` with a plain name.
        """
        pairs = []
        for item in filter(None, (part.strip() for part in (setting("PROBES_HUB_UPLOAD_TOKENS") or "").split(","))):
            name, _, secret = item.partition(":")
            try:
                pairs.append((check_user_name(name.strip()), secret.strip()))
            except ValueError as error:
                raise ConfigError(f"PROBES_HUB_UPLOAD_TOKENS: {error}") from None
            if len(secret.strip()) < 8:
                raise ConfigError(f"PROBES_HUB_UPLOAD_TOKENS: the secret of {name.strip()!r} is shorter than 8 characters; use a long random one.")
        listed = setting("PROBES_HUB_UPLOADERS")
        uploaders = frozenset(n.strip() for n in listed.split(",") if n.strip()) if listed else None
        return cls(setting("SYSTEM") == "spaces", tuple(pairs), uploaders)

    @property
    def enabled(self) -> bool:
        return self.on_space or bool(self.tokens)

    def identify(self, signed_in: str | None, token: str | None) -> str:
        """The uploader's user name: the signed-in Hugging Face user (on a Space) or the owner of the token given.

        Raises:
            ValueError: nobody identified, or not allowed; the message says how uploads are enabled here.
        """
        if self.on_space and signed_in:
            if self.uploaders is not None and signed_in not in self.uploaders:
                raise ValueError(f"{signed_in} is signed in but not among this Space's uploaders (PROBES_HUB_UPLOADERS); ask its operator.")
            return check_user_name(signed_in)
        if token and self.tokens:
            for name, secret in self.tokens:
                if hmac.compare_digest(token.encode("utf-8"), secret.encode("utf-8")):
                    return name
            raise ValueError("That upload token is not on this server's list; check it with the operator.")
        if self.on_space:
            raise ValueError(SIGN_IN)
        raise ValueError(TOKEN_NEEDED if self.tokens else OFF)

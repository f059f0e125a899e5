# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions shared by the collection's helpers.

A helper raises one of these with a message that reads as one sentence and keyword context
(file, url, module, service, field, value) that a module may return next to ``msg``. A module's
``main()`` catches ``UpdaterError`` once and hands ``str(error)`` to ``fail_json``.
"""

import json


class UpdaterError(Exception):
    """Base of every error the collection's helpers raise on purpose."""

    def __init__(self, message, **context):
        super().__init__(message)
        self.message = message
        self.context = context

    def __str__(self):
        return self.message


class PathError(UpdaterError):
    """A path from a manifest, a record or a bundle is unsafe or unusable."""


class ManifestError(UpdaterError):
    """An enterprise manifest or a host record is unreadable or invalid."""


class DowngradeError(ManifestError):
    """The enterprise offers a lower manifest ID than the one a host or dist already has."""


class ReplayError(DowngradeError):
    """The enterprise manifest is older (lower serial) than the one a host last accepted."""


class SignatureError(ManifestError):
    """A key, a signature file or a manifest's signature is unusable or does not verify."""


class PatchError(UpdaterError):
    """A patch bundle is invalid or cannot be applied to the enterprise distribution."""


def shown(value, limit=80):
    """Render a bad value for a message: as JSON, so strings are quoted and NUL is visible."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)

    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def json_kind(value):
    """What a parsed JSON value is, for a message: "null", "a list", "an object" ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"

"""USD's own reason for an error, without the C++ around it.

A ``Tf.ErrorException`` reads ``Error in 'pxrInternal_v0_26_11__pxrReserved__::Sdf_CrateFile::...' at line 3554 in
file /opt/USD/pxr/usd/sdf/crateFile.cpp : 'Sdf crate file corrupt, possibly truncated: table of contents at offset
382 but file size is 291'``, one such record per error, the most specific first and ``Failed to open layer @...@``
last. :func:`usd_reason` keeps the first line of the first specific message, with the C++ namespaces removed.
"""

from __future__ import annotations

import re

_RECORD = re.compile(r"Error in '[^']*' at line \d+ in file [^:]* : '(.*?)'(?=\s*(?:Error in '|$))", re.S)
_NAMESPACE = re.compile(r"pxrInternal_v\d+_\d+(?:_\d+)?__pxrReserved__(?:::|_)")
_GENERIC = re.compile(r"^Failed to open layer @")


def usd_reason(exc: BaseException, path: str = "") -> str:
    """The first line of USD's most specific message in ``exc`` (C++ namespaces and the file's own path removed).

    :param exc: the exception USD raised (``Tf.ErrorException`` or any other).
    :param path: the file, dropped from the start of the reason (the caller's error names it already).
    """
    messages: list[str] = []
    for part in getattr(exc, "args", None) or (exc,):
        try:
            text = str(part)
        except UnicodeDecodeError:  # USD quotes the bad bytes of a file that is not UTF-8 text
            text = "Error in '' at line 0 in file  : 'the file holds bytes that are not valid UTF-8 text'"
        messages += [m.strip() for m in _RECORD.findall(text)] or [ln.strip() for ln in text.splitlines()
                                                                    if ln.strip()]
    specific = [m for m in messages if not _GENERIC.match(m)]
    reason = (specific or messages or ["unknown error"])[0]
    reason = _NAMESPACE.sub("", reason).strip().splitlines()[0].strip()
    if path and reason.startswith(path + ":"):
        reason = "line " + reason[len(path) + 1:].strip()
    return reason

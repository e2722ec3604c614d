#!/usr/bin/env python3
"""An independent UserSig decoder and verifier, written from contract §2 with the standard library
only (it uses neither the tls-sig-api-v2 package nor imgate's code), to check imgate's output.

usage: decode.py APPID KEY USER SIG [--now-ms MILLIS]

Prints the decoded JSON fields, then `valid`, or `invalid: code NNNNN: why`.
Exit 0 valid, 1 invalid, 2 usage. Checks in the order of §2's table (without the throttle,
the app lookup and revocation): 70002 empty, 70003 undecodable, 70014 sdkappid, 70013 identifier,
70009 HMAC, 70001 expired (now > TLS.time + TLS.expire, now in milliseconds; --now-ms fixes now).
"""
import argparse
import base64
import binascii
import hashlib
import hmac
import json
import sys
import time
import zlib

# A real ticket inflates to a few hundred bytes; stop well before a zlib bomb costs anything.
MAX_INFLATED = 16 * 1024

FROM_URL = str.maketrans({"*": "+", "-": "/", "_": "="})


class Invalid(Exception):
    def __init__(self, code, why):
        super().__init__(why)
        self.code = code
        self.why = why


def is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def decode(user_sig):
    if user_sig == "":
        raise Invalid(70002, "UserSig is empty")
    bad = sorted(set(user_sig) & set("+/="))
    if bad:
        raise Invalid(70003, f"characters {bad} are outside the UserSig alphabet")
    try:
        compressed = base64.b64decode(user_sig.translate(FROM_URL).encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise Invalid(70003, f"base64: {e}")
    d = zlib.decompressobj()
    try:
        raw = d.decompress(compressed, MAX_INFLATED + 1)
    except zlib.error as e:
        raise Invalid(70003, f"zlib: {e}")
    if len(raw) > MAX_INFLATED:
        raise Invalid(70003, f"inflates to more than {MAX_INFLATED} bytes")
    if not d.eof:
        raise Invalid(70003, "zlib: truncated stream")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Invalid(70003, f"JSON: {e}")
    if not isinstance(doc, dict):
        raise Invalid(70003, "JSON: not an object")
    for name, ok, what in [
        ("TLS.ver", lambda v: isinstance(v, str), "a string"),
        ("TLS.identifier", lambda v: isinstance(v, str), "a string"),
        ("TLS.sdkappid", is_uint, "an unsigned integer"),
        ("TLS.time", is_uint, "an unsigned integer"),
        ("TLS.expire", is_uint, "an unsigned integer"),
        ("TLS.sig", lambda v: isinstance(v, str), "a string"),
    ]:
        if name not in doc:
            raise Invalid(70003, f"field {name} is missing")
        if not ok(doc[name]):
            raise Invalid(70003, f"field {name} is not {what}: {doc[name]!r}")
    if "TLS.userbuf" in doc and not isinstance(doc["TLS.userbuf"], str):
        raise Invalid(70003, f"field TLS.userbuf is not a string: {doc['TLS.userbuf']!r}")
    return doc


def content(doc):
    s = (f"TLS.identifier:{doc['TLS.identifier']}\n"
         f"TLS.sdkappid:{doc['TLS.sdkappid']}\n"
         f"TLS.time:{doc['TLS.time']}\n"
         f"TLS.expire:{doc['TLS.expire']}\n")
    if "TLS.userbuf" in doc:
        s += f"TLS.userbuf:{doc['TLS.userbuf']}\n"
    return s


def verify(doc, appid, key, user, now_ms):
    if doc["TLS.sdkappid"] != appid:
        raise Invalid(70014, f"TLS.sdkappid {doc['TLS.sdkappid']} is not {appid}")
    if doc["TLS.identifier"] != user:
        raise Invalid(70013, f"TLS.identifier {doc['TLS.identifier']!r} is not {user!r}")
    mac = hmac.new(key.encode("utf-8"), content(doc).encode("utf-8"), hashlib.sha256).digest()
    try:
        got = base64.b64decode(doc["TLS.sig"].encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        got = b""
    if not hmac.compare_digest(mac, got):
        raise Invalid(70009, "HMAC does not match")
    expire_at = doc["TLS.time"] + doc["TLS.expire"]
    if now_ms > expire_at * 1000:
        raise Invalid(70001, f"expired at {expire_at}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("appid", type=int)
    p.add_argument("key")
    p.add_argument("user")
    p.add_argument("sig")
    p.add_argument("--now-ms", type=int, default=None)
    a = p.parse_args()
    now_ms = a.now_ms if a.now_ms is not None else time.time_ns() // 1_000_000
    try:
        doc = decode(a.sig)
        for k, v in doc.items():
            print(f"{k}: {v}")
        print(f"expire_at: {doc['TLS.time'] + doc['TLS.expire']}")
        verify(doc, a.appid, a.key, a.user, now_ms)
    except Invalid as e:
        print(f"invalid: code {e.code}: {e.why}")
        return 1
    print("valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())

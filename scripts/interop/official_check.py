#!/usr/bin/env python3
"""Checks a UserSig with the official PyPI generator (tls-sig-api-v2 1.1) itself.

usage: official_check.py APPID KEY USER SIG

The package has no verify function, so this uses its own pieces: its base64_decode_url to decode,
its HMAC routine (TLSSigAPIv2.__hmacsha256) to recompute TLS.sig from the decoded fields, and its
generator, with the clock fixed at the ticket's TLS.time, to mint the same ticket and compare the
decoded JSON objects (same fields, same values, same JSON types). Expiry is not checked.
Prints `official python: ok` and exits 0, or prints why and exits 1.
"""
import json
import sys
import zlib

import TLSSigAPIv2


def decode(sig):
    return json.loads(zlib.decompress(TLSSigAPIv2.base64_decode_url(sig.encode("ascii"))))


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    appid, key, user, sig = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    doc = decode(sig)
    if doc.get("TLS.sdkappid") != appid or doc.get("TLS.identifier") != user:
        print(f"official python: ticket is for {doc.get('TLS.sdkappid')}/{doc.get('TLS.identifier')!r}")
        return 1
    api = TLSSigAPIv2.TLSSigAPIv2(appid, key)
    userbuf = doc.get("TLS.userbuf")
    mac = api._TLSSigAPIv2__hmacsha256(user, doc["TLS.time"], doc["TLS.expire"], userbuf).decode()
    if mac != doc["TLS.sig"]:
        print(f"official python: TLS.sig {doc['TLS.sig']} but the package computes {mac}")
        return 1
    fixed = doc["TLS.time"]
    TLSSigAPIv2.time.time = lambda: fixed
    if userbuf is None:
        again = api.gen_sig(user, doc["TLS.expire"])
    else:
        import base64
        again = api.gen_sig_with_userbuf(user, doc["TLS.expire"], base64.b64decode(userbuf))
    theirs = decode(again)
    if theirs != doc or any(type(theirs[k]) is not type(doc[k]) for k in doc):
        print(f"official python: decoded ticket differs from the package's own\n"
              f"  ours:   {json.dumps(doc, sort_keys=True)}\n  theirs: {json.dumps(theirs, sort_keys=True)}")
        return 1
    print("official python: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

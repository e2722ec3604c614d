#!/usr/bin/env python3
"""Prints a UserSig minted by the official PyPI generator (tls-sig-api-v2 1.1).

usage: mint.py APPID KEY USER EXPIRE [--time UNIX_SECS] [--userbuf TEXT]

--time fixes the generator's clock (it reads time.time()), to mint known vectors or tickets that
expired long ago; --userbuf uses gen_sig_with_userbuf (the generator base64-encodes the bytes and
signs the base64 text). Run it with .interop/bin/python (scripts/interop-setup.sh writes it).
"""
import argparse
import sys

try:
    import TLSSigAPIv2
except ImportError:
    sys.exit("mint.py: the PyPI package tls-sig-api-v2 is not importable: "
             "run scripts/interop-setup.sh and use .interop/bin/python")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("appid", type=int)
    p.add_argument("key")
    p.add_argument("user")
    p.add_argument("expire", type=int)
    p.add_argument("--time", type=int, default=None)
    p.add_argument("--userbuf", default=None)
    a = p.parse_args()
    if a.time is not None:
        fixed = a.time
        TLSSigAPIv2.time.time = lambda: fixed  # the module does `import time` and calls time.time()
    api = TLSSigAPIv2.TLSSigAPIv2(a.appid, a.key)
    if a.userbuf is None:
        sig = api.gen_sig(a.user, a.expire)
    else:
        sig = api.gen_sig_with_userbuf(a.user, a.expire, a.userbuf.encode("utf-8"))
    print(sig)


if __name__ == "__main__":
    main()

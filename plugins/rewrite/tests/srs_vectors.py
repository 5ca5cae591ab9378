#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Print the SRS known-answer vectors of test_rewrite_srs.c, made by the
real postsrsd (Debian 1.10): private instances on loopback ports, one per
separator, with the test's secrets, asked over the Postfix tcp_table
protocol ("get KEY" -> "200 VALUE"). The vectors hold the day stamp of the
day they were made, printed as VEC_DAY (days since the epoch).

    plugins/rewrite/tests/srs_vectors.py > /tmp/vectors.inc
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

SECRETS = ["first-secret-0123456789abcdef", "second-secret-0123456789abcdef"]
DOMAIN = "fwd.example"
SENDERS = [
    "alice@example.org",
    "Alice.Smith@Example.ORG",
    "a+tag=x@sub.example.com",
    "SRS0=abcd=AB=example.org=alice@fwd1.example",
    "SRS0+abcd=AB=example.org=alice@fwd1.example",
    "srs0-abcd=AB=example.org=alice@fwd1.example",
    "SRS1=wxyz=fwd1.example==abcd=AB=example.org=alice@fwd2.example",
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def ask(port, key):
    for _ in range(50):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=3)
            break
        except OSError:
            time.sleep(0.05)
    with s:
        s.sendall(b"get " + urllib.parse.quote(key).encode() + b"\n")
        r = s.makefile("rb").readline().decode().strip()
    code, _, val = r.partition(" ")
    return code, urllib.parse.unquote(val)


def run(sep, secrets):
    d = tempfile.mkdtemp()
    sf = os.path.join(d, "secret")
    with open(sf, "w") as f:
        f.write("\n".join(secrets) + "\n")
    fp, rp = free_port(), free_port()
    p = subprocess.Popen(["postsrsd", "-s" + sf, "-d" + DOMAIN, "-a" + sep, "-f%d" % fp, "-r%d" % rp,
                          "-l127.0.0.1", "-t5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = [(s, ask(fp, s)) for s in SENDERS]
    finally:
        p.terminate()
        p.wait(5)
    return out


def main():
    print("/* made by srs_vectors.py with postsrsd %s */" %
          subprocess.run(["postsrsd", "-v"], capture_output=True, text=True).stdout.strip().replace("\n", " "))
    print("#define VEC_DAY %d" % (int(time.time()) // 86400))
    for name, sep, secrets in (("vec_eq", "=", SECRETS), ("vec_plus", "+", SECRETS), ("vec_minus", "-", SECRETS),
                               ("vec_second", "=", SECRETS[::-1])):
        print("static const struct vec %s[] = {" % name)
        for s, (code, v) in run(sep, secrets):
            if code != "200":
                sys.exit("postsrsd: %s: %s %s" % (s, code, v))
            print('    {"%s", "%s"},' % (s, v))
        print("};")


main()

#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Write the seed corpus of fuzz_milter (tests/fuzz/corpus/milter/).

Each seed is one byte that seeds the driver's split pattern, then what a
milter could send: option negotiation, verdicts, end-of-message edits,
SMTP reply texts, and broken packets. Run from anywhere:
    python3 tests/fuzz/milter_seeds.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "milter")


def pkt(cmd, payload=b""):
    return struct.pack(">I", len(payload) + 1) + cmd + payload


def u32(v):
    return struct.pack(">I", v)


def optneg(version=6, actions=0x1FF, steps=0x1FFFFF, lists=b""):
    return pkt(b"O", u32(version) + u32(actions) + u32(steps) + lists)


SEEDS = {
    "optneg": optneg(),
    "optneg-macros": optneg(lists=u32(1) + b"j {my}\0" + u32(3) + b"{rcpt_addr}\0" + u32(6) + b"\0"),
    "optneg-v2-short": optneg(2, 0x3F, 0x7F) + pkt(b"O", u32(6) + u32(1)),
    "verdicts": b"".join(pkt(c) for c in [b"c", b"p", b"s", b"a", b"r", b"t", b"d", b"4", b"f"]),
    "replycode": pkt(b"y", b"550 5.7.1 Blocked by policy\0"),
    "replycode-multi": pkt(b"y", b"451-4.7.1 100%% busy\r\n451-4.7.1 \r\n451 4.7.1 try later\0"),
    "replycode-class-mismatch": pkt(b"y", b"550 4.7.1 wrong class\0"),
    "eom-edits": b"".join([
        pkt(b"h", b"X-Spam-Flag\0YES\0"),
        pkt(b"i", u32(0) + b"X-First\0folded\n\tvalue\0"),
        pkt(b"m", u32(2) + b"Received\0\0"),
        pkt(b"e", b"<bounce@example.org>\0SIZE=100\0"),
        pkt(b"+", b"<copy@example.org>\0"),
        pkt(b"2", b"<dsn@example.org>\0NOTIFY=NEVER\0"),
        pkt(b"-", b"<old@example.org>\0"),
        pkt(b"b", b"new body\r\n"),
        pkt(b"b", b"\0binary\r\n.\r\n"),
        pkt(b"q", b"suspicious attachment\0"),
        pkt(b"p"),
        pkt(b"a"),
    ]),
    "header-injection": pkt(b"h", b"X-A\0v\nBcc: victim@example.org\0"),
    "setsymlist": pkt(b"l", u32(2) + b"{mail_addr} {auth_authen}\0"),
    "bad-zero-length": pkt(b"c") + b"\0\0\0\0",
    "bad-unknown-command": pkt(b"c") + pkt(b"Z", b"junk"),
    "bad-oversize": b"\x00\x02\x00\x00" + b"b",
    "truncated": pkt(b"h", b"X-Truncated\0value\0")[:-5],
    "text-replycode": b"550-5.7.1 first line\r\n550 5.7.1 second line",
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, (name, body) in enumerate(sorted(SEEDS.items())):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(bytes([i * 37 % 256]) + body)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: GPL-2.0-or-later
"""A tiny DNS responder on 127.0.0.1 for tests: answers A, PTR and TXT
queries from a dict, can stay silent for some query types (a zone that
never answers), and records every query it got, in order."""

import socket
import struct
import threading

TYPES = {1: "A", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA"}


def _name(raw):
    out = b""
    for label in raw.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


class DNSStub:
    """records: {("PTR", "2.0.0.127.in-addr.arpa"): "host.test", ("A", "host.test"):
    "127.0.0.2", ("TXT", name): "text", ("MX", name): "10 mx.test"}; a list value gives several records
    (["127.0.0.2", "127.0.0.4"]); silent: set of types never answered;
    silent_name: a predicate on the (lower-case) name, True = never answered."""

    def __init__(self, records=None, silent=(), silent_name=None):
        self.records = {(t, n.lower()): v for (t, n), v in (records or {}).items()}
        self.silent = set(silent)
        self.silent_name = silent_name
        self.queries = []          # ("PTR", "2.0.0.127.in-addr.arpa"), in order
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def count(self, qtype=None, pred=None):
        with self.lock:
            return sum(1 for t, n in self.queries
                       if (qtype is None or t == qtype) and (pred is None or pred(n)))

    def loop(self):
        while not self.stop.is_set():
            try:
                q, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            labels, i = [], 12
            while q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode())
                i += 1 + q[i]
            name = ".".join(labels).lower()
            qtype = TYPES.get(struct.unpack(">H", q[i + 1:i + 3])[0], "?")
            with self.lock:
                self.queries.append((qtype, name))
            if qtype in self.silent or (self.silent_name and self.silent_name(name)):
                continue
            qend = i + 5
            rec = self.records.get((qtype, name))
            recs = rec if isinstance(rec, list) else ([rec] if rec else [])
            flags = 0x8180 if recs else 0x8183
            out = q[:2] + struct.pack(">HHHHH", flags, 1, len(recs), 0, 0) + q[12:qend]
            for one in recs:
                if qtype == "A":
                    rdata = socket.inet_aton(one)
                elif qtype == "AAAA":
                    rdata = socket.inet_pton(socket.AF_INET6, one)
                elif qtype == "PTR":
                    rdata = _name(one)
                elif qtype == "MX":
                    pref, host = one.split()
                    rdata = struct.pack(">H", int(pref)) + _name(host)
                else:
                    raw = one.encode()
                    rdata = b"".join(bytes([len(raw[k:k + 255])]) + raw[k:k + 255]
                                     for k in range(0, len(raw), 255))
                code = {"A": 1, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}[qtype]
                out += struct.pack(">HHHIH", 0xc00c, code, 1, 300, len(rdata)) + rdata
            self.sock.sendto(out, peer)

    def close(self):
        self.stop.set()
        self.sock.close()
        self.t.join(2)

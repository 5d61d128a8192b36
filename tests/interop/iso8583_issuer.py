#!/usr/bin/env python3
"""Interop check: an issuer's host written with pyiso8583 (an independent ISO 8583
implementation) signs on to a running junctiond and answers what the switch forwards.

Usage: iso8583_issuer.py HOST PORT REQUESTS. Signs on as the demo hosted issuer, prints
"ready" on its own line, then answers REQUESTS financial requests (0100/0200): approved
with auth code PY0001, or 51 when the amount is above 500.00; echoes are answered too.
Every message from the switch must carry a MAC that verifies with the issuer's key
(computed here with Python's hmac). Prints one JSON object of what it saw; exits 1 on any
mismatch.
"""

import copy
import hashlib
import hmac
import json
import socket
import struct
import sys

import iso8583
from iso8583.specs import default_ascii

KEY = bytes.fromhex("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")  # the demo hosted issuer's key
INSTITUTION = "100003"


def encode(doc):
    encoded, _ = iso8583.encode(copy.deepcopy(doc), spec=default_ascii)
    return bytes(encoded)


def sign(doc):
    secondary = any(65 <= int(k) <= 127 for k in doc if k.isdigit())
    field = "128" if secondary else "64"
    doc = dict(doc)
    doc.pop("64", None)
    doc.pop("128", None)
    doc[field] = "0" * 16
    unsigned = encode(doc)
    doc[field] = hmac.new(KEY, unsigned[:-16], hashlib.sha256).digest()[:8].hex().upper()
    return encode(doc)


def verify(raw, doc):
    field = "128" if "128" in doc else "64"
    if field not in doc:
        return False
    expected = hmac.new(KEY, raw[:-16], hashlib.sha256).digest()[:8].hex().upper()
    return hmac.compare_digest(expected, doc[field])


class Link:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=20)

    def send(self, doc):
        raw = sign(doc)
        self.sock.sendall(struct.pack(">H", len(raw)) + raw)

    def receive(self):
        size = struct.unpack(">H", self.recv(2))[0]
        raw = self.recv(size)
        decoded, _ = iso8583.decode(raw, spec=default_ascii)
        return decoded, verify(raw, decoded)

    def recv(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("connection closed")
            data += chunk
        return data


def response_to(doc, code):
    mti = doc["t"]
    answer = {"t": mti[:2] + str(int(mti[2]) + 1) + mti[3]}
    for field in ("2", "3", "4", "7", "11", "12", "13", "32", "33", "37", "41", "42", "49", "70", "90"):
        if field in doc:
            answer[field] = doc[field]
    answer["39"] = code
    return answer


def main():
    link = Link(sys.argv[1], int(sys.argv[2]))
    wanted = int(sys.argv[3])
    link.send({"t": "0800", "7": "1126093000", "11": "900001", "32": INSTITUTION, "70": "001"})
    answer, mac_ok = link.receive()
    ok = answer.get("t") == "0810" and answer.get("39") == "00" and mac_ok
    print("ready", flush=True)
    seen = []
    while len(seen) < wanted:
        doc, mac_ok = link.receive()
        ok = ok and mac_ok
        if doc["t"] == "0800":
            link.send(response_to(doc, "00"))
            continue
        amount = int(doc.get("4", "0"))
        code = "51" if amount > 50000 else "00"
        reply = response_to(doc, code)
        if code == "00":
            reply["38"] = "PY0001"
        link.send(reply)
        seen.append({"mti": doc["t"], "2": doc.get("2"), "11": doc.get("11"), "32": doc.get("32"),
                     "33": doc.get("33"), "4": doc.get("4"), "mac_ok": mac_ok, "answered": code})
    print(json.dumps({"ok": ok, "seen": seen}, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

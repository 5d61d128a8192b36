#!/usr/bin/env python3
"""Interop check: drive a running junctiond with messages encoded by pyiso8583 (an
independent ISO 8583 implementation) and decode its answers with it.

Usage: iso8583_client.py HOST PORT [--tls-ca CA.pem [--tls-cert CERT.pem --tls-key KEY.pem]].
Prints one JSON object of results; exits 1 on any mismatch. The MAC is computed here with
Python's hmac, independently of Junction's code. With --tls-ca the connection is TLS
(Python's ssl, that is OpenSSL: another independent implementation), verifying the
switch's certificate against CA.pem, and presenting a client certificate when given.
"""

import copy
import hashlib
import hmac
import json
import socket
import ssl
import struct
import sys

import iso8583
from iso8583.specs import default_ascii

KEY = bytes.fromhex("33333333333333333333333333333333")  # the demo acquirer's key
INSTITUTION = "200001"
PAN = "4000001234567899"


def encode(doc):
    encoded, _ = iso8583.encode(copy.deepcopy(doc), spec=default_ascii)
    return bytes(encoded)


def sign(doc):
    secondary = any(65 <= int(k) <= 127 for k in doc if k.isdigit())
    field = "128" if secondary else "64"
    doc = dict(doc)
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


class Client:
    def __init__(self, host, port, tls=None):
        self.sock = socket.create_connection((host, port), timeout=20)
        if tls:
            context = ssl.create_default_context(cafile=tls["--tls-ca"])
            if "--tls-cert" in tls:
                context.load_cert_chain(tls["--tls-cert"], tls["--tls-key"])
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.stan = 700000

    def call(self, doc, signed=True):
        raw = sign(doc) if signed else encode(doc)
        self.sock.sendall(struct.pack(">H", len(raw)) + raw)
        size = struct.unpack(">H", self.recv(2))[0]
        answer = self.recv(size)
        decoded, _ = iso8583.decode(answer, spec=default_ascii)
        return decoded, verify(answer, decoded)

    def recv(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("connection closed")
            data += chunk
        return data

    def next_stan(self):
        self.stan += 1
        return f"{self.stan:06d}"


def financial(mti, processing, amount, stan):
    return {
        "t": mti, "2": PAN, "3": processing, "4": f"{amount:012d}", "7": "1126093000", "11": stan,
        "12": "093000", "13": "1126", "22": "071", "32": INSTITUTION, "37": f"PY{stan:0>10}",
        "41": "PYTERM01", "42": "PYMERCHANT00001", "49": "840",
    }


def main():
    options = dict(zip(sys.argv[3::2], sys.argv[4::2]))
    client = Client(sys.argv[1], int(sys.argv[2]), options if "--tls-ca" in options else None)
    results = {}
    ok = True

    def check(name, decoded, mac_ok, mti, code):
        nonlocal ok
        good = decoded.get("t") == mti and decoded.get("39") == code and mac_ok
        results[name] = {"mti": decoded.get("t"), "39": decoded.get("39"), "mac_ok": mac_ok, "ok": good}
        ok = ok and good
        return decoded

    stan = client.next_stan()
    d, m = client.call({"t": "0800", "7": "1126093000", "11": stan, "32": INSTITUTION, "70": "001"})
    check("sign_on", d, m, "0810", "00")
    stan = client.next_stan()
    d, m = client.call({"t": "0800", "7": "1126093000", "11": stan, "32": INSTITUTION, "70": "301"})
    check("echo", d, m, "0810", "00")
    stan = client.next_stan()
    request = financial("0200", "000000", 1234, stan)
    d, m = client.call(request)
    check("purchase", d, m, "0210", "00")
    results["purchase"]["echo_ok"] = d.get("11") == stan and d.get("37") == request["37"] and len(d.get("38", "")) == 6
    ok = ok and results["purchase"]["echo_ok"]
    d, m = client.call(request)
    check("duplicate", d, m, "0210", "00")
    auth_stan = client.next_stan()
    d, m = client.call(financial("0100", "000000", 5000, auth_stan))
    check("authorization", d, m, "0110", "00")
    stan = client.next_stan()
    completion = financial("0220", "000000", 4000, stan)
    completion["90"] = f"0100{auth_stan}1126093000{INSTITUTION:0>11}{0:011d}"
    d, m = client.call(completion)
    check("completion", d, m, "0230", "00")
    stan = client.next_stan()
    d, m = client.call(financial("0100", "310000", 0, stan))
    check("balance_inquiry", d, m, "0110", "00")
    results["balance_inquiry"]["54"] = d.get("54")
    stan = client.next_stan()
    bad = financial("0200", "000000", 100, stan)
    bad["64"] = "0123456789ABCDEF"
    d, m = client.call(bad, signed=False)
    check("bad_mac", d, m, "0210", "63")
    results["ok"] = ok
    print(json.dumps(results, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

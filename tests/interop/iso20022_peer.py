"""Two instant-payment systems, played against Junction's ISO 20022 link.

Independent of Junction's code: every message is built from the official schemas with
`xmlschema` (encoding a dict), every message Junction sends or answers is validated with
`xmlschema` too, and the request signatures are computed here (HMAC-SHA256 over the QR
API's canonical string) and checked here on what Junction pushes.

Started with `--system ID:KEY_HEX:BIC` for each system; each gets an HTTP server on a free
port of loopback (its endpoint, `http://127.0.0.1:PORT/iso20022`), and the first line on
stdout is `{"ready": {ID: PORT, ...}}`. Then one JSON command per line on stdin, one JSON
answer per line on stdout:

  {"cmd": "switch", "url": "http://127.0.0.1:8080"}
  {"cmd": "send", "as": 13, "kind": "pacs.008", "fields": {...}}  -> the switch's answer
  {"cmd": "raw", "as": 13, "kind": "pacs.008", "body": "..."}      -> the same, body as given
  {"cmd": "json", "as": 13, "path": "/v1/iso20022/quotes", "body": {...}}  -> a signed JSON call
  {"cmd": "mode", "system": 14, "credit": "accept"|"reject:AC04"|"down"|"slow",
   "recall": "agree"|"refuse"}
  {"cmd": "received", "system": 14}  -> what the system's endpoint was sent
"""

import argparse
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

import xmlschema

SCHEMAS = os.environ.get("JUNCTION_ISO20022_SCHEMAS") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "junctiond", "schemas"
)
FILES = {
    "pacs.008": "pacs.008.001.09.xsd",
    "pacs.002": "pacs.002.001.11.xsd",
    "pacs.004": "pacs.004.001.10.xsd",
    "camt.056": "camt.056.001.09.xsd",
}
SCHEMA = {kind: xmlschema.XMLSchema(os.path.join(SCHEMAS, name)) for kind, name in FILES.items()}
KIND_OF_NAMESPACE = {schema.target_namespace: kind for kind, schema in SCHEMA.items()}


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


def encode(kind, data):
    schema = SCHEMA[kind]
    element = schema.encode({"@xmlns": schema.target_namespace, **data})
    return xmlschema.etree_tostring(element, namespaces={"": schema.target_namespace}, xml_declaration=True)


def agent(bic):
    return {"FinInstnId": {"BICFI": bic}}


def amount(value, currency):
    return {"@Ccy": currency, "$": value}


def pacs008(f):
    # xmlschema encodes a dict in its own order: every dict below follows the schema's.
    if "proxy" in f:
        proxy = {}
        if f.get("proxy_type"):
            proxy["Tp"] = {"Cd": f["proxy_type"]}
        elif f.get("proxy_prtry"):
            proxy["Tp"] = {"Prtry": f["proxy_prtry"]}
        proxy["Id"] = f["proxy"]
        creditor_account = {"Id": {"Othr": {"Id": "NOTPROVIDED"}}, "Prxy": proxy}
    else:
        creditor_account = {"Id": {"Othr": {"Id": f["account"]}}}
    tx = {
        "PmtId": {"EndToEndId": f["e2e"], **({"TxId": f["tx_id"]} if f.get("tx_id") else {})},
        "IntrBkSttlmAmt": amount(f["amount"], f["ccy"]),
    }
    if f.get("xchg_rate"):
        tx["XchgRate"] = f["xchg_rate"]
    tx["ChrgBr"] = "SLEV"
    tx["Dbtr"] = {"Nm": f.get("debtor_name", "LI Lei")}
    if f.get("debtor_account"):
        tx["DbtrAcct"] = {"Id": {"Othr": {"Id": f["debtor_account"]}}}
    tx["DbtrAgt"] = agent(f["sender_bic"])
    tx["CdtrAgt"] = agent(f.get("bic", "NOTPROVIDED"))
    tx["Cdtr"] = {"Nm": f.get("creditor_name", "CHAN Tai Man")}
    tx["CdtrAcct"] = creditor_account
    if f.get("remittance"):
        tx["RmtInf"] = {"Ustrd": [f["remittance"]]}
    data = {
        "FIToFICstmrCdtTrf": {
            "GrpHdr": {
                "MsgId": f["msg_id"],
                "CreDtTm": now(),
                "NbOfTxs": str(f.get("nb_of_txs", 1)),
                "SttlmInf": {"SttlmMtd": "CLRG"},
            },
            "CdtTrfTxInf": [tx] * f.get("copies", 1),
        }
    }
    return encode("pacs.008", data)


def pacs004(f):
    data = {
        "PmtRtr": {
            "GrpHdr": {
                "MsgId": f["msg_id"],
                "CreDtTm": now(),
                "NbOfTxs": "1",
                "SttlmInf": {"SttlmMtd": "CLRG"},
            },
            "TxInf": [
                {
                    "RtrId": f.get("rtr_id", f["msg_id"]),
                    "OrgnlEndToEndId": f["orgnl_e2e"],
                    "OrgnlTxId": f["orgnl_tx_id"],
                    "RtrdIntrBkSttlmAmt": amount(f["amount"], f["ccy"]),
                    "RtrRsnInf": [{"Rsn": {"Cd": f.get("reason", "AC04")}}],
                }
            ],
        }
    }
    return encode("pacs.004", data)


def camt056(f):
    data = {
        "FIToFIPmtCxlReq": {
            "Assgnmt": {
                "Id": f["case_id"],
                "Assgnr": {"Agt": agent(f["assigner_bic"])},
                "Assgne": {"Agt": agent(f["assignee_bic"])},
                "CreDtTm": now(),
            },
            "Undrlyg": [
                {
                    "TxInf": [
                        {
                            "OrgnlEndToEndId": f["orgnl_e2e"],
                            **({"OrgnlTxId": f["orgnl_tx_id"]} if f.get("orgnl_tx_id") else {}),
                            "CxlRsnInf": [{"Rsn": {"Cd": f.get("reason", "DUPL")}}],
                        }
                    ]
                }
            ],
        }
    }
    return encode("camt.056", data)


def pacs002(original, status, reason=None):
    """A receiving system's status report on a pushed credit."""
    tx = {
        "OrgnlEndToEndId": original["e2e"],
        "OrgnlTxId": original["tx_id"],
        "TxSts": status,
    }
    if reason:
        tx["StsRsnInf"] = [{"Rsn": {"Cd": reason}, "AddtlInf": ["refused by the creditor's system"]}]
    data = {
        "FIToFIPmtStsRpt": {
            "GrpHdr": {"MsgId": "RCV-" + uuid.uuid4().hex[:20], "CreDtTm": now()},
            "OrgnlGrpInfAndSts": [{"OrgnlMsgId": original["msg_id"], "OrgnlMsgNmId": "pacs.008.001.09"}],
            "TxInfAndSts": [tx],
        }
    }
    return encode("pacs.002", data)


BUILDERS = {"pacs.008": pacs008, "pacs.004": pacs004, "camt.056": camt056}


def leaves(kind, body):
    """Validates with xmlschema and flattens to {path: text} (the first of each path)."""
    schema = SCHEMA[kind]
    schema.validate(body)
    decoded = schema.to_dict(body)
    flat = {}

    def walk(node, path):
        if isinstance(node, dict):
            if "$" in node:
                flat.setdefault(path, str(node["$"]))
                if "@Ccy" in node:
                    flat.setdefault(path + "@Ccy", node["@Ccy"])
            for key, value in node.items():
                if not key.startswith("@") and key != "$":
                    walk(value, f"{path}/{key}" if path else key)
        elif isinstance(node, list):
            for item in node:
                walk(item, path)
        else:
            flat.setdefault(path, str(node))

    walk(decoded, "")
    return flat


def canonical(method, path, timestamp, participant, idempotency, body):
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join(["JUNCTION-HMAC-SHA256", method, path, timestamp, participant, idempotency, body_hash])


class System:
    def __init__(self, spec):
        ident, key, bic = spec.split(":")
        self.id, self.key, self.bic = int(ident), bytes.fromhex(key), bic
        self.credit_mode = "accept"
        self.recall_mode = "agree"
        self.received = []
        self.lock = threading.Lock()
        self.seen_credits = {}

    def sign(self, method, path, idempotency, body):
        timestamp = str(int(time.time()))
        signature = hmac.new(
            self.key, canonical(method, path, timestamp, str(self.id), idempotency, body).encode(), hashlib.sha256
        ).hexdigest()
        return {
            "X-Junction-Participant": str(self.id),
            "X-Junction-Timestamp": timestamp,
            "X-Junction-Signature": signature,
        }

    def verify(self, headers, path, body):
        given = headers.get("X-Junction-Signature", "")
        expected = hmac.new(
            self.key,
            canonical(
                "POST",
                path,
                headers.get("X-Junction-Timestamp", ""),
                headers.get("X-Junction-Participant", ""),
                headers.get("Idempotency-Key", ""),
                body,
            ).encode(),
            hashlib.sha256,
        ).hexdigest()
        return hmac.compare_digest(given, expected) and headers.get("X-Junction-Participant") == str(self.id)


def handler_for(system):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body=b"", content_type="application/xml"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            kind = self.path.rsplit("/", 1)[-1]
            entry = {"kind": kind, "path": self.path, "signature_ok": system.verify(self.headers, self.path, body)}
            try:
                entry["fields"] = leaves(kind, body)
                entry["valid"] = True
            except Exception as error:  # noqa: BLE001 - reported to the test
                entry["valid"] = False
                entry["error"] = str(error)[:500]
            with system.lock:
                system.received.append(entry)
                credit_mode, recall_mode = system.credit_mode, system.recall_mode
            if not entry["valid"] or not entry["signature_ok"]:
                return self.answer(400, b"refused")
            fields = entry["fields"]
            if kind == "pacs.008":
                if credit_mode == "down":
                    return self.answer(503, b"down")
                if credit_mode == "slow":
                    time.sleep(5)
                    return self.answer(503, b"slow")
                tx = "FIToFICstmrCdtTrf/CdtTrfTxInf"
                original = {
                    "e2e": fields[f"{tx}/PmtId/EndToEndId"],
                    "tx_id": fields[f"{tx}/PmtId/TxId"],
                    "msg_id": fields["FIToFICstmrCdtTrf/GrpHdr/MsgId"],
                }
                if credit_mode.startswith("reject:"):
                    return self.answer(200, pacs002(original, "RJCT", credit_mode.split(":", 1)[1]).encode())
                return self.answer(200, pacs002(original, "ACSC").encode())
            if kind == "camt.056":
                if recall_mode != "agree":
                    return self.answer(409, b"the creditor does not agree")
                tx = "FIToFIPmtCxlReq/Undrlyg/TxInf"
                reply = pacs004(
                    {
                        "msg_id": "RTR-" + uuid.uuid4().hex[:16],
                        "orgnl_e2e": fields[f"{tx}/OrgnlEndToEndId"],
                        "orgnl_tx_id": fields[f"{tx}/OrgnlTxId"],
                        "amount": fields[f"{tx}/OrgnlIntrBkSttlmAmt"],
                        "ccy": fields[f"{tx}/OrgnlIntrBkSttlmAmt@Ccy"],
                        "reason": "FOCR",
                    }
                )
                return self.answer(200, reply.encode())
            # A status report or a return for this system as a sender: taken.
            return self.answer(200, b"")

    return Handler


def send(switch, system, kind, body):
    path = f"/v1/iso20022/{kind}"
    data = body.encode() if isinstance(body, str) else body
    headers = {"Content-Type": "application/xml", **system.sign("POST", path, "", data)}
    request = urllib.request.Request(switch + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    result = {"http": status, "body": text}
    if text.startswith("<?xml"):
        namespace = text.split('xmlns="', 1)[1].split('"', 1)[0] if 'xmlns="' in text else ""
        answer_kind = KIND_OF_NAMESPACE.get(namespace)
        result["kind"] = answer_kind
        try:
            result["fields"] = leaves(answer_kind, text)
            result["valid"] = True
        except Exception as error:  # noqa: BLE001 - reported to the test
            result["valid"] = False
            result["error"] = str(error)[:500]
    else:
        try:
            result["json"] = json.loads(text)
        except ValueError:
            pass
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", action="append", default=[])
    args = parser.parse_args()
    systems = {}
    ports = {}
    for spec in args.system:
        system = System(spec)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(system))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        systems[system.id] = system
        ports[system.id] = server.server_address[1]
    print(json.dumps({"ready": ports}), flush=True)
    switch = None
    for line in sys.stdin:
        command = json.loads(line)
        cmd = command["cmd"]
        if cmd == "switch":
            switch = command["url"]
            result = {"ok": True}
        elif cmd == "send":
            body = BUILDERS[command["kind"]](command["fields"])
            result = send(switch, systems[command["as"]], command["kind"], body)
            result["sent"] = body
        elif cmd == "json":
            system = systems[command["as"]]
            data = json.dumps(command["body"]).encode()
            headers = {"Content-Type": "application/json", **system.sign("POST", command["path"], "", data)}
            request = urllib.request.Request(switch + command["path"], data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    result = {"http": response.status, "json": json.loads(response.read())}
            except urllib.error.HTTPError as error:
                result = {"http": error.code, "json": json.loads(error.read() or b"null")}
        elif cmd == "raw":
            result = send(switch, systems[command["as"]], command["kind"], command["body"])
        elif cmd == "mode":
            system = systems[command["system"]]
            with system.lock:
                system.credit_mode = command.get("credit", system.credit_mode)
                system.recall_mode = command.get("recall", system.recall_mode)
            result = {"ok": True}
        elif cmd == "received":
            system = systems[command["system"]]
            with system.lock:
                result = {"received": list(system.received)}
        else:
            result = {"error": f"unknown command {cmd}"}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

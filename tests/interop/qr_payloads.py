#!/usr/bin/env python3
"""Merchant QR payloads from the public generators, for tests/tests/daemon_qr.rs.

    pip install promptpay==1.1.9 pypix==0.2.0   (scripts/install-deps.sh does it)
    python3 tests/interop/qr_payloads.py

Prints one JSON object: name -> payload, made at test time by code independent of ours.
"""

import json

from promptpay import qrcode as promptpay
from pypix import Pix


def pix(key: str, name: str, city: str, amount: float, txid: str) -> str:
    p = Pix()
    p.set_pixkey(key)
    p.set_merchant_name(name)
    p.set_merchant_city(city)
    p.set_amount(amount)
    p.set_txid(txid)
    return str(p)


def pix_with_padded_crc(key: str, name: str, city: str, amount: float) -> str:
    """pypix 0.2.0 prints the CRC without zero padding (about 1 payload in 16 then ends in
    3 hex digits and is invalid); vary the txid until the CRC has 4 digits."""
    for attempt in range(100):
        payload = pix(key, name, city, amount, "PEDIDO%03d" % attempt)
        if payload[-8:-4] == "6304":
            return payload
    raise RuntimeError("pypix never produced a 4-digit CRC")


def main() -> None:
    print(
        json.dumps(
            {
                # PromptPay credit transfer to a mobile number, with and without an amount.
                "promptpay_static": promptpay.generate_payload("081-234-5678"),
                "promptpay_amount": promptpay.generate_payload("0812345678", 1234.5),
                # PromptPay to a national ID (routed by the prefix rule, not the exact one).
                "promptpay_national_id": promptpay.generate_payload("1234567890121", 99.99),
                # Pix (BRL) with an amount and a txid.
                "pix_amount": pix_with_padded_crc("pix@example.com", "Loja Exemplo", "SAO PAULO", 52.3),
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()

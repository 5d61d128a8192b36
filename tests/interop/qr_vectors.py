#!/usr/bin/env python3
"""Regenerate the EMV merchant-presented QR test vectors used by engine/src/qr/tests.rs.

    pip install promptpay==1.1.9 pypix==0.2.0
    python3 tests/interop/qr_vectors.py

Prints one JSON object: name -> payload. Paste changed payloads into the Rust
test constants of the same (upper-cased) name.

Where a generator has no option for a layout (PromptPay bill payment, Pix with a
location URL, UnionPay, QRIS) the payload is assembled from the generator's own TLV
helper and the CRC comes from libscrc (installed with promptpay), so the CRC is
still computed by code independent of ours.
"""

import json

import libscrc
from promptpay import qrcode as promptpay
from pypix import Pix


def tlv(object_id: str, value: str) -> str:
    # promptpay.format counts len() in code points, as EMV QRCPS does.
    return promptpay.format(object_id, value)


def with_crc(body: str) -> str:
    """Append ID 63 with CRC-16/CCITT-FALSE over the UTF-8 bytes up to and including "6304"."""
    body += "6304"
    return body + "%04X" % libscrc.xmodem(body.encode("utf-8"), 0xFFFF)


def pix(key, name, city, amount=None, txid=None, description=None) -> str:
    p = Pix()
    p.set_pixkey(key)
    p.set_merchant_name(name)
    p.set_merchant_city(city)
    if amount is not None:
        p.set_amount(amount)
    if txid is not None:
        p.set_txid(txid)
    if description is not None:
        p.set_description(description)
    return str(p)


def pypix_short_crc_bug() -> str:
    """pypix 0.2.0 prints the CRC without zero padding, so about 1 payload in 16 ends
    in a 3-character CRC under a declared length of 04. We must reject it."""
    for i in range(1000):
        payload = pix("pix@example.com", "Loja Exemplo", "SAO PAULO", amount=1 + i / 100)
        if not payload[-8:].startswith("6304") or len(payload.split("6304")[-1]) != 4:
            return payload
    raise RuntimeError("no short CRC found")


def main() -> None:
    vectors = {}

    # promptpay: credit transfer, template 29 (AID A000000677010111).
    vectors["promptpay_phone_static"] = promptpay.generate_payload("081-234-5678")
    vectors["promptpay_phone_amount"] = promptpay.generate_payload("0812345678", 1234.5)
    vectors["promptpay_national_id_static"] = promptpay.generate_payload("1-2345-67890-12-1")
    vectors["promptpay_national_id_amount"] = promptpay.generate_payload("1234567890121", 99.99)
    vectors["promptpay_ewallet_static"] = promptpay.generate_payload("140000000000001")

    # PromptPay bill payment, template 30 (AID A000000677010112): biller ID, ref 1, ref 2.
    # Laid out as the promptpay package lays out template 29 (no 52, 59, 60).
    vectors["promptpay_bill_payment"] = with_crc(
        tlv("00", "01")
        + tlv("01", "12")
        + tlv(
            "30",
            tlv("00", "A000000677010112")
            + tlv("01", "010753600031508")
            + tlv("02", "INV0001")
            + tlv("03", "CUST42"),
        )
        + tlv("53", "764")
        + tlv("54", "500.00")
        + tlv("58", "TH")
    )

    # Pix (pypix): static key only; key with amount, txid and description.
    vectors["pix_static"] = pix("123e4567-e12b-12d1-a456-426655440000", "Fulano de Tal", "BRASILIA")
    vectors["pix_amount_txid"] = pix(
        "pix@example.com", "Loja Exemplo", "SAO PAULO", amount=10.5, txid="PEDIDO123",
        description="Pedido 123",
    )
    vectors["pypix_short_crc_bug"] = pypix_short_crc_bug()

    # Pix dynamic (location URL in 26/25, initiation 12): pypix 0.2.0 cannot make one.
    vectors["pix_dynamic_url"] = with_crc(
        tlv("00", "01")
        + tlv("01", "12")
        + tlv(
            "26",
            tlv("00", "br.gov.bcb.pix")
            + tlv("25", "pix.example.com/qr/v2/9d36b84fc70b478fb95c12729b90ca25"),
        )
        + tlv("52", "0000")
        + tlv("53", "986")
        + tlv("54", "123.45")
        + tlv("58", "BR")
        + tlv("59", "Loja Exemplo")
        + tlv("60", "SAO PAULO")
        + tlv("62", tlv("05", "***"))
    )

    # UnionPay, ID 15 = acquirer IIN (8) + forwarding IIN (8) + merchant ID (15).
    vectors["unionpay_id15"] = with_crc(
        tlv("00", "01")
        + tlv("01", "11")
        + tlv("15", "27330524" + "00020344" + "100500000000001")
        + tlv("52", "5812")
        + tlv("53", "156")
        + tlv("58", "CN")
        + tlv("59", "LUCKY NOODLE")
        + tlv("60", "SHANGHAI")
        + tlv("62", tlv("07", "T0000001"))
        + tlv("64", tlv("00", "ZH") + tlv("01", "幸运面馆") + tlv("02", "上海"))
    )
    # UnionPay by AID (RID A000000333) in a merchant account template.
    vectors["unionpay_aid_template"] = with_crc(
        tlv("00", "01")
        + tlv("01", "11")
        + tlv("27", tlv("00", "A000000333010101") + tlv("01", "100500000000002"))
        + tlv("52", "5411")
        + tlv("53", "344")
        + tlv("58", "HK")
        + tlv("59", "HARBOUR MART")
        + tlv("60", "HONG KONG")
    )

    # QRIS: provider template 26, national template 51 with the NMID in 51/02.
    vectors["qris_static"] = with_crc(
        tlv("00", "01")
        + tlv("01", "11")
        + tlv(
            "26",
            tlv("00", "ID.CO.EXAMPLE.WWW")
            + tlv("01", "936009991234567890")
            + tlv("02", "EX1234567890")
            + tlv("03", "UMI"),
        )
        + tlv("51", tlv("00", "ID.CO.QRIS.WWW") + tlv("02", "ID1020012345678") + tlv("03", "UMI"))
        + tlv("52", "5812")
        + tlv("53", "360")
        + tlv("58", "ID")
        + tlv("59", "TOKO CONTOH")
        + tlv("60", "JAKARTA")
        + tlv("61", "10110")
        + tlv("62", tlv("07", "A01"))
    )

    # EMVCo MPM specification example (Chinese text in template 64); CRC checked here too.
    emvco = (
        "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
        "520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京"
        "540523.7253031565502016233030412340603***0708A60086670902ME91320016A011223344"
        "9988770708123456786304A13A"
    )
    assert with_crc(emvco[:-8]) == emvco, "EMVCo example CRC"
    vectors["emvco_example"] = emvco

    print(json.dumps(vectors, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()

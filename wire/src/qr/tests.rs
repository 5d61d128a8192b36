//! Vectors from real generators (tests/interop/qr_vectors.py regenerates them), the EMVCo
//! specification example, corrupted variants, and property tests.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

// --- Vectors: output of tests/interop/qr_vectors.py (promptpay 1.1.9, pypix 0.2.0). ---

const PROMPTPAY_PHONE_STATIC: &str = "00020101021129370016A000000677010111011300668123456785802TH530376463045D82";
const PROMPTPAY_PHONE_AMOUNT: &str =
    "00020101021229370016A000000677010111011300668123456785802TH530376454071234.50630414B2";
const PROMPTPAY_NATIONAL_ID_STATIC: &str = "00020101021129370016A000000677010111021312345678901215802TH530376463041C03";
const PROMPTPAY_NATIONAL_ID_AMOUNT: &str =
    "00020101021229370016A000000677010111021312345678901215802TH5303764540599.9963049B67";
const PROMPTPAY_EWALLET_STATIC: &str = "00020101021129390016A00000067701011103151400000000000015802TH530376463049194";
const PROMPTPAY_BILL_PAYMENT: &str =
    "00020101021230600016A00000067701011201150107536000315080207INV00010306CUST4253037645406500.005802TH63049312";
const PIX_STATIC: &str = "00020126580014BR.GOV.BCB.PIX0136123e4567-e12b-12d1-a456-4266554400005204000053039865802BR5913Fulano de Tal6008BRASILIA63044699";
const PIX_AMOUNT_TXID: &str = "00020126510014BR.GOV.BCB.PIX0115pix@example.com0210Pedido 123520400005303986540510.505802BR5912Loja Exemplo6009SAO PAULO62260522IdentificadorPEDIDO1236304B13E";
/// pypix 0.2.0 writes this CRC as 3 hex digits (no zero padding): must be rejected.
const PYPIX_SHORT_CRC_BUG: &str =
    "00020126370014BR.GOV.BCB.PIX0115pix@example.com52040000530398654041.045802BR5912Loja Exemplo6009SAO PAULO6304270";
const PIX_DYNAMIC_URL: &str = "00020101021226760014br.gov.bcb.pix2554pix.example.com/qr/v2/9d36b84fc70b478fb95c12729b90ca255204000053039865406123.455802BR5912Loja Exemplo6009SAO PAULO62070503***6304A7C5";
const UNIONPAY_ID15: &str = "000201010211153127330524000203441005000000000015204581253031565802CN5912LUCKY NOODLE6008SHANGHAI62120708T000000164200002ZH0104幸运面馆0202上海63046038";
const UNIONPAY_AID_TEMPLATE: &str =
    "00020101021127390016A00000033301010101151005000000000025204541153033445802HK5912HARBOUR MART6009HONG KONG63047E1A";
const QRIS_STATIC: &str = "00020101021126660017ID.CO.EXAMPLE.WWW01189360099912345678900212EX12345678900303UMI51440014ID.CO.QRIS.WWW0215ID10200123456780303UMI5204581253033605802ID5911TOKO CONTOH6007JAKARTA61051011062070703A0163044607";
/// The EMVCo MPM specification's example: Chinese text in template 64, 54 after 64.
const EMVCO_EXAMPLE: &str = "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412340603***0708A60086670902ME91320016A0112233449988770708123456786304A13A";

const VALID: [&str; 13] = [
    PROMPTPAY_PHONE_STATIC,
    PROMPTPAY_PHONE_AMOUNT,
    PROMPTPAY_NATIONAL_ID_STATIC,
    PROMPTPAY_NATIONAL_ID_AMOUNT,
    PROMPTPAY_EWALLET_STATIC,
    PROMPTPAY_BILL_PAYMENT,
    PIX_STATIC,
    PIX_AMOUNT_TXID,
    PIX_DYNAMIC_URL,
    UNIONPAY_ID15,
    UNIONPAY_AID_TEMPLATE,
    QRIS_STATIC,
    EMVCO_EXAMPLE,
];

fn parse(input: &str) -> QrPayload {
    match QrPayload::parse(input) {
        Ok(payload) => payload,
        Err(error) => panic!("{input:?} rejected: {error}"),
    }
}

fn rejected(input: &str) -> QrError {
    match QrPayload::parse(input) {
        Ok(_) => panic!("{input:?} accepted"),
        Err(error) => error,
    }
}

/// Asserts the error code and the path it names, e.g. ("duplicate_id", "62/05").
fn assert_rejected(input: &str, code: &str, path: &str) {
    let error = rejected(input);
    let found_path = error.path().map(|path| path.to_string()).unwrap_or_default();
    assert_eq!((error.code(), found_path.as_str()), (code, path), "{input:?}: {error}");
}

/// The body of a valid payload: everything before "6304".
fn body(payload: &str) -> &str {
    &payload[..payload.len() - 8]
}

#[test]
fn crc_check_value() {
    assert_eq!(crc16_ccitt_false(b"123456789"), 0x29B1);
    assert_eq!(crc16_ccitt_false(b""), 0xFFFF);
}

#[test]
fn every_vector_parses_and_reencodes_byte_for_byte() {
    for vector in VALID {
        let payload = parse(vector);
        assert_eq!(payload.as_str(), vector);
        assert_eq!(encode(payload.objects()).unwrap(), vector);
        assert_eq!(append_crc(body(vector)), vector);
        assert_eq!(payload.objects().first().map(|object| object.id), Some(0));
        assert_eq!(payload.objects().last().map(|object| object.id), Some(63));
    }
}

#[test]
fn emvco_example() {
    assert_eq!(crc16_ccitt_false(&EMVCO_EXAMPLE.as_bytes()[..EMVCO_EXAMPLE.len() - 4]), 0xA13A);
    let payload = parse(EMVCO_EXAMPLE);
    let ids: Vec<u8> = payload.objects().iter().map(|object| object.id).collect();
    assert_eq!(ids, [0, 1, 29, 31, 52, 58, 59, 60, 64, 54, 53, 55, 62, 91, 63]);
    assert_eq!(payload.initiation(), Some(Initiation::Dynamic));
    assert_eq!(payload.mcc(), Some("4111"));
    assert_eq!(payload.currency_numeric(), 156);
    assert_eq!(payload.amount(), Some("23.72"));
    assert_eq!(payload.amount_minor_units(2).unwrap(), Some(2372));
    assert_eq!(payload.tip(), Some(Tip::Prompt));
    assert_eq!(payload.country(), "CN");
    assert_eq!(payload.merchant_name(), Some("BEST TRANSPORT"));
    assert_eq!(payload.merchant_city(), Some("BEIJING"));
    assert_eq!(payload.language(), Some(MerchantLanguage { preference: "ZH", name: "最佳运输", city: Some("北京") }));
    let additional = payload.additional_data().unwrap();
    assert_eq!(additional.store_label, Some("1234"));
    assert_eq!(additional.customer_label, Some("***"));
    assert_eq!(additional.terminal_label, Some("A6008667"));
    assert_eq!(additional.consumer_data_request, Some("ME"));
    assert_eq!(
        payload.template(91).unwrap(),
        [DataObject::primitive(0, "A011223344998877"), DataObject::primitive(7, "12345678"),]
    );
    // D156... is China's national RID, not UnionPay's: no scheme of ours.
    assert_eq!(payload.scheme().key, MerchantKey { scheme: Scheme::Other, identifier: "D15600000000".to_owned() });
}

#[test]
fn promptpay_credit_transfer() {
    let cases = [
        (PROMPTPAY_PHONE_STATIC, "mobile:0066812345678", None),
        (PROMPTPAY_PHONE_AMOUNT, "mobile:0066812345678", Some(123450)),
        (PROMPTPAY_NATIONAL_ID_STATIC, "national_id:1234567890121", None),
        (PROMPTPAY_NATIONAL_ID_AMOUNT, "national_id:1234567890121", Some(9999)),
        (PROMPTPAY_EWALLET_STATIC, "ewallet:140000000000001", None),
    ];
    for (vector, identifier, satang) in cases {
        let payload = parse(vector);
        assert_eq!(payload.scheme().key.scheme, Scheme::PromptPay, "{vector}");
        assert_eq!(payload.scheme().key.identifier, identifier);
        assert_eq!(payload.amount_minor_units(2).unwrap(), satang);
        let expected_initiation = if satang.is_some() { Initiation::Dynamic } else { Initiation::Static };
        assert_eq!(payload.initiation(), Some(expected_initiation));
        assert_eq!(payload.currency_numeric(), 764);
        assert_eq!(payload.country(), "TH");
        // The generator omits 52, 59 and 60; accepted for PromptPay only.
        assert_eq!((payload.mcc(), payload.merchant_name(), payload.merchant_city()), (None, None, None));
    }
    let payload = parse(PROMPTPAY_PHONE_STATIC);
    assert_eq!(
        payload.scheme().account,
        SchemeAccount::PromptPay(PromptPayAccount {
            template_id: 29,
            target: PromptPayTarget::Mobile { proxy: "0066812345678".to_owned() },
        })
    );
}

#[test]
fn promptpay_bill_payment() {
    let payload = parse(PROMPTPAY_BILL_PAYMENT);
    assert_eq!(payload.scheme().key.identifier, "biller:010753600031508");
    assert_eq!(
        payload.scheme().account,
        SchemeAccount::PromptPay(PromptPayAccount {
            template_id: 30,
            target: PromptPayTarget::BillPayment {
                biller_id: "010753600031508".to_owned(),
                reference_1: Some("INV0001".to_owned()),
                reference_2: Some("CUST42".to_owned()),
            },
        })
    );
    assert_eq!(payload.amount_minor_units(2).unwrap(), Some(50000));
}

#[test]
fn pix() {
    let payload = parse(PIX_STATIC);
    assert_eq!(payload.initiation(), None); // pypix leaves 01 out.
    assert_eq!(
        payload.scheme().key,
        MerchantKey { scheme: Scheme::Pix, identifier: "123e4567-e12b-12d1-a456-426655440000".to_owned() }
    );
    assert_eq!(payload.merchant_name(), Some("Fulano de Tal"));
    assert_eq!(payload.amount(), None);

    let payload = parse(PIX_AMOUNT_TXID);
    assert_eq!(
        payload.scheme().account,
        SchemeAccount::Pix(PixAccount {
            template_id: 26,
            key: Some("pix@example.com".to_owned()),
            description: Some("Pedido 123".to_owned()),
            url: None,
            txid: Some("IdentificadorPEDIDO123".to_owned()),
        })
    );
    assert_eq!(payload.amount_minor_units(2).unwrap(), Some(1050));
    assert_eq!(payload.merchant_city(), Some("SAO PAULO"));

    let payload = parse(PIX_DYNAMIC_URL);
    assert_eq!(payload.initiation(), Some(Initiation::Dynamic));
    let SchemeAccount::Pix(account) = &payload.scheme().account else {
        panic!("not Pix: {:?}", payload.scheme());
    };
    assert_eq!(account.key, None);
    assert_eq!(account.txid, None); // "***"
    assert_eq!(payload.scheme().key.identifier, "pix.example.com/qr/v2/9d36b84fc70b478fb95c12729b90ca25");
}

#[test]
fn pypix_unpadded_crc_is_rejected() {
    assert_rejected(PYPIX_SHORT_CRC_BUG, "truncated", "63");
}

#[test]
fn unionpay() {
    let payload = parse(UNIONPAY_ID15);
    assert_eq!(
        payload.scheme().key,
        MerchantKey { scheme: Scheme::UnionPay, identifier: "27330524100500000000001".to_owned() }
    );
    assert_eq!(
        payload.scheme().account,
        SchemeAccount::UnionPay(UnionPayAccount {
            id: 15,
            aid: None,
            acquirer_iin: Some("27330524".to_owned()),
            forwarding_iin: Some("00020344".to_owned()),
            merchant_id: "100500000000001".to_owned(),
        })
    );
    assert_eq!(payload.language().unwrap().name, "幸运面馆");

    let payload = parse(UNIONPAY_AID_TEMPLATE);
    assert_eq!(payload.scheme().key.scheme, Scheme::UnionPay);
    assert_eq!(payload.scheme().key.identifier, "100500000000002");
    assert_eq!(payload.currency_numeric(), 344);

    let bad = QrPayloadBuilder::new()
        .primitive(15, "2733052400020X44100500000000001")
        .mcc("5812")
        .currency_numeric(156)
        .country("CN")
        .merchant_name("A")
        .merchant_city("B")
        .encode()
        .unwrap();
    assert_rejected(&bad, "bad_value", "15");
}

#[test]
fn qris() {
    let payload = parse(QRIS_STATIC);
    assert_eq!(payload.scheme().key, MerchantKey { scheme: Scheme::Qris, identifier: "ID1020012345678".to_owned() });
    let SchemeAccount::Qris(account) = &payload.scheme().account else {
        panic!("not QRIS: {:?}", payload.scheme());
    };
    assert_eq!(account.merchant_criteria.as_deref(), Some("UMI"));
    assert_eq!(
        account.providers,
        [QrisProvider {
            template_id: 26,
            gui: "ID.CO.EXAMPLE.WWW".to_owned(),
            merchant_pan: Some("936009991234567890".to_owned()),
            merchant_id: Some("EX1234567890".to_owned()),
            merchant_criteria: Some("UMI".to_owned()),
        }]
    );
    assert_eq!(payload.postal_code(), Some("10110"));
    assert_eq!(payload.additional_data().unwrap().terminal_label, Some("A01"));
}

#[test]
fn several_schemes_unionpay_first() {
    let payload = QrPayloadBuilder::new()
        .primitive(15, "2733052400020344100500000000001")
        .merchant_account(29, "A000000677010111", &[(1, "0066812345678")])
        .currency_numeric(764)
        .country("TH")
        .mcc("5812")
        .merchant_name("SOM TAM")
        .merchant_city("BANGKOK")
        .build()
        .unwrap();
    let schemes: Vec<Scheme> = payload.schemes().iter().map(|m| m.key.scheme).collect();
    assert_eq!(schemes, [Scheme::UnionPay, Scheme::PromptPay]);
    assert_eq!(payload.scheme().key.scheme, Scheme::UnionPay);
}

#[test]
fn serializes_to_json() {
    let json = serde_json::to_value(parse(PIX_AMOUNT_TXID)).unwrap();
    assert_eq!(json["scheme"]["scheme"], "pix");
    assert_eq!(json["scheme"]["identifier"], "pix@example.com");
    assert_eq!(json["scheme"]["account"]["txid"], "IdentificadorPEDIDO123");
    assert_eq!(json["amount"], "10.50");
    assert_eq!(json["currency_numeric"], 986);
    assert_eq!(json["objects"][0], serde_json::json!({"id": "00", "value": "01"}));
    assert_eq!(json["objects"][1]["id"], "26");
    assert_eq!(json["objects"][1]["value"][0]["value"], "BR.GOV.BCB.PIX");

    let json = serde_json::to_value(parse(EMVCO_EXAMPLE)).unwrap();
    assert_eq!(json["tip"], serde_json::json!({"rule": "prompt"}));
    assert_eq!(json["initiation"], "dynamic");
    assert_eq!(json["language"]["name"], "最佳运输");
    assert_eq!(json["scheme"]["account"], serde_json::Value::Null);

    let json = serde_json::to_value(parse(PROMPTPAY_BILL_PAYMENT)).unwrap();
    assert_eq!(json["scheme"]["account"]["target"]["kind"], "bill_payment");
}

#[test]
fn lowercase_crc_is_accepted_and_normalised() {
    let lower = format!("{}6304a13a", body(EMVCO_EXAMPLE));
    let payload = parse(&lower);
    assert_eq!(payload.as_str(), lower);
    assert_eq!(payload.primitive(63), Some("A13A"));
    assert_eq!(encode(payload.objects()).unwrap(), EMVCO_EXAMPLE);
}

// --- Corrupted variants. ---

#[test]
fn one_changed_character_is_a_crc_mismatch() {
    for vector in VALID {
        let covered = &vector[..vector.len() - 4];
        for (index, character) in covered.char_indices() {
            // ASCII for ASCII: a change within one byte, which CRC-16 always detects.
            if !character.is_ascii() {
                continue;
            }
            let replacement = if character == '0' { '1' } else { '0' };
            let mut corrupted = vector.to_owned();
            corrupted.replace_range(index..index + 1, &replacement.to_string());
            let error = rejected(&corrupted);
            // Changing the "6304" itself hides the CRC; then the structure must fail.
            if index >= covered.len() - 4 {
                assert_ne!(error.code(), "crc_mismatch", "{corrupted}");
            } else {
                assert_eq!(error.code(), "crc_mismatch", "{corrupted}: {error}");
            }
        }
    }
    let error = rejected(&format!("{}6304A13B", body(EMVCO_EXAMPLE)));
    assert_eq!(error, QrError::CrcMismatch { expected: 0xA13A, found: 0xA13B });
    assert_eq!(error.to_string(), "CRC mismatch: payload carries A13B, computed A13A");
}

#[test]
fn broken_structure_with_a_correct_crc() {
    let pix = body(PIX_STATIC);
    let emvco = body(EMVCO_EXAMPLE);
    // Duplicate top-level ID.
    assert_rejected(&append_crc(&format!("{pix}5802BR")), "duplicate_id", "58");
    // Duplicate ID within a template.
    assert_rejected(&append_crc(&pix.replace("5802BR", "5802BR62140503***0503***")), "duplicate_id", "62/05");
    // 56 without 55 = "02", and 55 = "02" without 56.
    assert_rejected(&append_crc(&format!("{pix}56031.0")), "unexpected_id", "56");
    assert_rejected(&append_crc(&format!("{emvco}56031.0")), "unexpected_id", "56");
    assert_rejected(&append_crc(&emvco.replace("550201", "550202")), "missing_id", "56");
    assert_rejected(&append_crc(&emvco.replace("550201", "550203")), "missing_id", "57");
    assert_rejected(&append_crc(&format!("{pix}57031.5")), "unexpected_id", "57");
    let fixed_fee = append_crc(&emvco.replace("550201", "55020256041.50"));
    let payload = parse(&fixed_fee);
    assert_eq!(payload.tip(), Some(Tip::FixedFee { amount: "1.50" }));
    assert_eq!(payload.fixed_fee_minor_units(2).unwrap(), Some(150));
    // Length digits that are not digits, and a zero length.
    assert_rejected(&append_crc(&emvco.replace("5914BEST", "59A4BEST")), "bad_length", "59");
    assert_rejected(&append_crc(&format!("{pix}6100")), "bad_length", "61");
    // An ID that is not two digits.
    assert_rejected(&append_crc(&format!("{pix}X102AB")), "bad_id", "payload");
    // A value that runs past the end (it swallows the CRC, so this is checked structurally).
    assert_rejected(&append_crc(&format!("{pix}6130AB")), "truncated", "61");
    // A template whose content is not TLV.
    assert_rejected(&append_crc(&format!("{pix}6203abc")), "truncated", "62");
    // 00 not first, 63 not last.
    let moved = format!("{}000201", &pix[6..]);
    assert_rejected(&append_crc(&moved), "out_of_order", "00");
    assert_rejected(&format!("{}5802BR", append_crc(&pix.replace("5802BR", ""))), "out_of_order", "63");
    // Missing required IDs and templates without what they require.
    assert_rejected(&append_crc(&pix.replace("5913Fulano de Tal", "")), "missing_id", "59");
    assert_rejected(&append_crc(&pix.replace("6008BRASILIA", "")), "missing_id", "60");
    assert_rejected(&append_crc(&pix.replace("52040000", "")), "missing_id", "52");
    assert_rejected(&append_crc(&emvco.replace("5303156", "")), "missing_id", "53");
    assert_rejected(&append_crc(&emvco.replace("5802CN", "")), "missing_id", "58");
    assert_rejected(&append_crc(&pix[6..]), "missing_id", "00");
    assert_rejected(pix, "missing_id", "63");
    let no_accounts =
        emvco.replace("29300012D156000000000510A93FO3230Q", "").replace("31280012D15600000001030812345678", "");
    assert_rejected(&append_crc(&no_accounts), "missing_id", "02");
    assert_rejected(
        &append_crc(&emvco.replace("0012D156000000000510A93FO3230Q", "0112D156000000000510A93FO3230Q")),
        "missing_id",
        "29/00",
    );
    assert_rejected(&append_crc(&emvco.replace("64200002ZH", "64200302ZH")), "missing_id", "64/00");
    assert_rejected(
        &append_crc(
            &PIX_STATIC.replace("0136123e4567-e12b-12d1-a456-426655440000", "0236123e4567-e12b-12d1-a456-426655440000")
                [..PIX_STATIC.len() - 8],
        ),
        "missing_id",
        "26/01",
    );
    assert_rejected(
        &append_crc(&body(QRIS_STATIC).replace("0215ID1020012345678", "0115ID1020012345678")),
        "missing_id",
        "51/02",
    );
    // Bad values.
    assert_rejected(&append_crc(&emvco.replace("540523.72", "540523,72")), "bad_value", "54");
    assert_rejected(&append_crc(&emvco.replace("540523.72", "54052.3.7")), "bad_value", "54");
    assert_rejected(&append_crc(&emvco.replace("540523.72", "5405-23.7")), "bad_value", "54");
    assert_rejected(&append_crc(&emvco.replace("540523.72", "54141234567890.123")), "bad_length", "54");
    assert_rejected(&append_crc(&emvco.replace("010212", "010213")), "bad_value", "01");
    assert_rejected(&append_crc(&emvco.replace("000201", "000202")), "bad_value", "00");
    assert_rejected(&append_crc(&emvco.replace("52044111", "5204411A")), "bad_value", "52");
    assert_rejected(&append_crc(&emvco.replace("5303156", "53031X6")), "bad_value", "53");
    assert_rejected(&append_crc(&emvco.replace("5802CN", "5802cn")), "bad_value", "58");
    assert_rejected(&append_crc(&emvco.replace("550201", "550204")), "bad_value", "55");
    assert_rejected(&append_crc(&emvco.replace("0902ME", "0902MX")), "bad_value", "62/09");
    assert_rejected(
        &append_crc(&emvco.replace("5914BEST TRANSPORT", "5926BEST TRANSPORT AND MORE XY")),
        "bad_length",
        "59",
    );
    assert_rejected(&append_crc(&format!("{pix}63041234")), "duplicate_id", "63");
}

#[test]
fn truncated_payloads() {
    for vector in VALID {
        let char_count = vector.chars().count();
        for keep in 1..char_count {
            let cut: String = vector.chars().take(keep).collect();
            let error = rejected(&cut);
            assert_ne!(error.code(), "crc_mismatch", "{cut}");
        }
    }
    assert_rejected(&EMVCO_EXAMPLE[..EMVCO_EXAMPLE.len() - 2], "truncated", "63");
    assert_rejected("0002", "truncated", "00");
    assert_rejected("000", "truncated", "payload");
    assert_eq!(rejected("").code(), "empty");
}

#[test]
fn limits() {
    let long = "0".repeat(PAYLOAD_CHARS_MAX + 1);
    assert_eq!(rejected(&long).code(), "too_long");
    // Characters, not bytes: 300 Thai characters (900 bytes) are still within the limit.
    let thai = "ก".repeat(300);
    assert_ne!(rejected(&thai).code(), "too_long");
}

#[test]
fn minor_units() {
    let at = FieldPath::top(54);
    let cases = [
        ("23.72", 2, Some(2372)),
        ("100", 0, Some(100)),
        ("100.00", 0, Some(100)),
        ("10.5", 2, Some(1050)),
        ("10.500", 2, Some(1050)),
        ("1.", 2, Some(100)),
        (".5", 2, Some(50)),
        ("0", 3, Some(0)),
        ("9999999999999", 4, Some(99_999_999_999_990_000)),
        ("10.505", 2, None),
        ("100.5", 0, None),
        ("9999999999999", 7, None),
        ("1,5", 2, None),
    ];
    for (decimal, exponent, expected) in cases {
        let found = amount::to_minor_units(at, decimal, exponent).ok();
        assert_eq!(found, expected, "{decimal} at exponent {exponent}");
    }
}

#[test]
fn field_path_display() {
    assert_eq!(FieldPath::ROOT.to_string(), "payload");
    assert_eq!(FieldPath::top(54).to_string(), "54");
    let path = FieldPath::top(62).child(50).child(0);
    assert_eq!(path.to_string(), "62/50/00");
    assert_eq!((path.id(), path.parent()), (Some(0), Some(50)));
    assert_eq!(FieldPath::top(62).child(5).parent(), Some(62));
    assert_eq!(FieldPath::top(62).parent(), None);
    let error =
        rejected(&append_crc(&body(PIX_AMOUNT_TXID).replace("62260522IdentificadorPEDIDO123", "62140503***0503***")));
    assert_eq!(error.to_string(), "ID 62/05 appears more than once");
}

#[test]
fn builder() {
    let payload = QrPayloadBuilder::new()
        .initiation(Initiation::Dynamic)
        .merchant_account(26, "br.gov.bcb.pix", &[(1, "+5561999999999")])
        .mcc("5812")
        .currency_numeric(986)
        .amount("7.25")
        .percentage_fee("3.5")
        .country("BR")
        .merchant_name("Padaria São João")
        .merchant_city("Brasília")
        .postal_code("70000000")
        .additional_data(&[(5, "TX1"), (50, "0004TEST")])
        .language("PT", "Padaria", None)
        .build()
        .unwrap();
    assert_eq!(payload.tip(), Some(Tip::PercentageFee { percentage: "3.5" }));
    assert_eq!(payload.merchant_name(), Some("Padaria São João"));
    assert_eq!(payload.scheme().key.identifier, "+5561999999999");
    assert_eq!(
        payload.additional_data().unwrap().objects[1],
        DataObject::template(50, vec![DataObject::primitive(0, "TEST")])
    );
    assert!(payload
        .as_str()
        .ends_with(&format!("{:04X}", crc16_ccitt_false(&payload.as_str().as_bytes()[..payload.as_str().len() - 4]))));
    // The encoder refuses what cannot be TLV.
    let error = QrPayloadBuilder::new().primitive(59, "").encode().unwrap_err();
    assert_eq!((error.code(), error.path()), ("bad_length", Some(FieldPath::top(59))));
    let encoded = QrPayloadBuilder::new().primitive(63, "ABCD").encode().unwrap();
    assert_eq!(encoded, append_crc("000201"));
    let misplaced = [DataObject::primitive(63, "ABCD"), DataObject::primitive(59, "A")];
    assert_eq!(encode(&misplaced).unwrap_err().code(), "out_of_order");
    let error = QrPayloadBuilder::new().primitive(100, "A").encode().unwrap_err();
    assert_eq!(error.code(), "bad_id");
    let error = QrPayloadBuilder::new().primitive(59, "x".repeat(100)).encode().unwrap_err();
    assert_eq!(error.code(), "bad_length");
}

// --- Property tests. ---

/// Text for names and cities: Latin, Chinese and Thai, as seen on merchant QRs.
fn text(chars_max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9 .&'\\-\u{4e00}-\u{4e2f}\u{0e01}-\u{0e2e}]{{1,{chars_max}}}"))
        .unwrap()
}

fn decimal(digits_max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9]{{1,{digits_max}}}(\\.[0-9]{{1,2}})?")).unwrap()
}

#[derive(Debug, Clone)]
enum SchemeChoice {
    Pix(String),
    PromptPay(u8, String),
    Qris(String, String),
    UnionPay(String, String),
    Other(String),
}

fn scheme_choice() -> impl Strategy<Value = SchemeChoice> {
    prop_oneof![
        "[a-z0-9.@+-]{1,77}".prop_map(SchemeChoice::Pix),
        (1u8..=3, "[0-9]{13,15}").prop_map(|(kind, proxy)| SchemeChoice::PromptPay(kind, proxy)),
        ("ID[0-9]{13}", "[0-9]{18}").prop_map(|(nmid, pan)| SchemeChoice::Qris(nmid, pan)),
        ("[0-9]{16}", "[0-9A-Z]{1,15}").prop_map(|(iins, mid)| SchemeChoice::UnionPay(iins, mid)),
        "[A-F0-9]{10,32}".prop_map(SchemeChoice::Other),
    ]
}

#[derive(Debug, Clone)]
struct Fields {
    scheme: SchemeChoice,
    initiation: Option<bool>,
    mcc: String,
    currency: u16,
    amount: Option<String>,
    tip: Option<(u8, String)>,
    country: String,
    name: String,
    city: String,
    postal_code: Option<String>,
    additional: Vec<(u8, String)>,
    language: Option<(String, String, Option<String>)>,
}

fn fields() -> impl Strategy<Value = Fields> {
    let head = (
        scheme_choice(),
        proptest::option::of(any::<bool>()),
        "[0-9]{4}",
        0u16..=999,
        proptest::option::of(decimal(10)),
        proptest::option::of((1u8..=3, decimal(2))),
        "[A-Z]{2}",
    );
    let tail = (
        text(25),
        text(15),
        proptest::option::of("[0-9A-Z]{1,10}"),
        proptest::collection::btree_map(1u8..=8, "[A-Za-z0-9*]{1,20}", 0..4),
        proptest::option::of(("[A-Z]{2}", text(25), proptest::option::of(text(15)))),
    );
    (head, tail).prop_map(
        |(
            (scheme, initiation, mcc, currency, amount, tip, country),
            (name, city, postal_code, additional, language),
        )| Fields {
            scheme,
            initiation,
            mcc,
            currency,
            amount,
            tip,
            country,
            name,
            city,
            postal_code,
            additional: additional.into_iter().collect(),
            language,
        },
    )
}

fn build(fields: &Fields) -> QrPayloadBuilder {
    let mut builder = QrPayloadBuilder::new()
        .mcc(&fields.mcc)
        .currency_numeric(fields.currency)
        .country(&fields.country)
        .merchant_name(&fields.name)
        .merchant_city(&fields.city);
    builder = match &fields.scheme {
        SchemeChoice::Pix(key) => builder.merchant_account(26, "br.gov.bcb.pix", &[(1, key)]),
        SchemeChoice::PromptPay(kind, proxy) => builder.merchant_account(29, "A000000677010111", &[(*kind, proxy)]),
        SchemeChoice::Qris(nmid, pan) => builder
            .merchant_account(26, "ID.CO.EXAMPLE.WWW", &[(1, pan), (3, "UMI")])
            .merchant_account(51, "ID.CO.QRIS.WWW", &[(2, nmid), (3, "UMI")]),
        SchemeChoice::UnionPay(iins, mid) => builder.primitive(15, format!("{iins}{mid}")),
        SchemeChoice::Other(aid) => builder.merchant_account(40, aid, &[(1, "MERCHANT-1")]),
    };
    if let Some(dynamic) = fields.initiation {
        let initiation = if dynamic { Initiation::Dynamic } else { Initiation::Static };
        builder = builder.initiation(initiation);
    }
    if let Some(amount) = &fields.amount {
        builder = builder.amount(amount);
    }
    builder = match &fields.tip {
        None => builder,
        Some((1, _)) => builder.tip_prompt(),
        Some((2, fee)) => builder.fixed_fee(fee),
        Some((_, percentage)) => builder.percentage_fee(percentage),
    };
    if let Some(postal_code) = &fields.postal_code {
        builder = builder.postal_code(postal_code);
    }
    if !fields.additional.is_empty() {
        let additional: Vec<(u8, &str)> = fields.additional.iter().map(|(id, value)| (*id, value.as_str())).collect();
        builder = builder.additional_data(&additional);
    }
    if let Some((preference, name, city)) = &fields.language {
        builder = builder.language(preference, name, city.as_deref());
    }
    builder
}

/// Random data object trees, valid at the TLV layer but not necessarily by the EMV rules.
fn data_object() -> impl Strategy<Value = DataObject> {
    let leaf = (0u8..=99, "[ -~\u{4e00}-\u{4e0f}]{1,12}").prop_map(|(id, value)| DataObject::primitive(id, value));
    leaf.prop_recursive(2, 24, 4, |inner| {
        (0u8..=99, proptest::collection::vec(inner, 1..4)).prop_map(|(id, objects)| DataObject::template(id, objects))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn builder_payloads_parse_back_equal(fields in fields()) {
        let builder = build(&fields);
        let built = builder.build();
        prop_assert!(built.is_ok(), "{:?}: {:?}", builder.encode(), built);
        let built = built.unwrap();
        let parsed = QrPayload::parse(built.as_str()).unwrap();
        prop_assert_eq!(&parsed, &built);
        prop_assert_eq!(encode(parsed.objects()).unwrap(), built.as_str());
        let mut expected_objects = builder.objects();
        expected_objects.push(DataObject::primitive(63, built.primitive(63).unwrap()));
        prop_assert_eq!(parsed.objects(), expected_objects.as_slice());
        prop_assert_eq!(parsed.merchant_name(), Some(fields.name.as_str()));
        prop_assert_eq!(parsed.merchant_city(), Some(fields.city.as_str()));
        prop_assert_eq!(parsed.amount(), fields.amount.as_deref());
        prop_assert_eq!(parsed.currency_numeric(), fields.currency);
        let expected_scheme = match fields.scheme {
            SchemeChoice::Pix(_) => Scheme::Pix,
            SchemeChoice::PromptPay(..) => Scheme::PromptPay,
            SchemeChoice::Qris(..) => Scheme::Qris,
            SchemeChoice::UnionPay(..) => Scheme::UnionPay,
            SchemeChoice::Other(_) => Scheme::Other,
        };
        prop_assert_eq!(parsed.scheme().key.scheme, expected_scheme);
        prop_assert!(serde_json::to_string(&parsed).is_ok());
    }

    #[test]
    fn random_strings_never_panic(input in "\\PC{0,600}") {
        let _ = QrPayload::parse(&input);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = QrPayload::parse(&String::from_utf8_lossy(&bytes));
    }

    /// Random TLV trees with a correct CRC get past the CRC check and exercise the field rules;
    /// whatever is accepted re-encodes to the same string.
    #[test]
    fn random_trees_never_panic(objects in proptest::collection::vec(data_object(), 0..12)) {
        if let Ok(encoded) = encode(&objects) {
            if let Ok(payload) = QrPayload::parse(&encoded) {
                prop_assert_eq!(encode(payload.objects()).unwrap(), encoded);
            }
        }
    }

    /// Valid vectors with one character replaced, inserted or deleted and the CRC recomputed:
    /// the structural and field checks see near-valid input. Never panics; what is accepted
    /// re-encodes to itself.
    #[test]
    fn mutated_vectors_never_panic(
        vector in proptest::sample::select(VALID.to_vec()),
        position in any::<proptest::sample::Index>(),
        replacement in proptest::char::any(),
        operation in 0u8..3,
    ) {
        let mut chars: Vec<char> = body(vector).chars().collect();
        let index = position.index(chars.len());
        match operation {
            0 => chars[index] = replacement,
            1 => chars.insert(index, replacement),
            _ => {
                chars.remove(index);
            }
        }
        let mutated = append_crc(&chars.into_iter().collect::<String>());
        if let Ok(payload) = QrPayload::parse(&mutated) {
            prop_assert_eq!(encode(payload.objects()).unwrap(), mutated);
        }
    }
}

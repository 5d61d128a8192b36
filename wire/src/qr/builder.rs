//! Building payloads: for the round-trip tests, for load tools, and for anything that has to
//! show a merchant QR.

use std::collections::BTreeMap;

use super::error::QrError;
use super::tlv::{self, DataObject, Value};
use super::{Initiation, QrPayload};

/// Builds a merchant-presented QR payload. Data objects are written in ascending ID order
/// (00 first, the CRC last); setting an ID again replaces it. [`QrPayloadBuilder::build`]
/// encodes and then parses, so what it returns passed every check a scanned payload passes.
///
/// ```ignore
/// let payload = QrPayloadBuilder::new()
///     .initiation(Initiation::Static)
///     .merchant_account(29, "A000000677010111", &[(1, "0066812345678")])
///     .currency_numeric(764)
///     .country("TH")
///     .build()?;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrPayloadBuilder {
    objects: BTreeMap<u8, Value>,
}

impl Default for QrPayloadBuilder {
    fn default() -> Self {
        QrPayloadBuilder::new()
    }
}

impl QrPayloadBuilder {
    /// Starts with ID 00 = "01" (the only payload format indicator).
    pub fn new() -> QrPayloadBuilder {
        let mut objects = BTreeMap::new();
        objects.insert(0, Value::Primitive("01".to_owned()));
        QrPayloadBuilder { objects }
    }

    /// Any primitive data object. A value set for ID 63 is replaced: the encoder writes the CRC.
    pub fn primitive(mut self, id: u8, value: impl Into<String>) -> QrPayloadBuilder {
        self.objects.insert(id, Value::Primitive(value.into()));
        self
    }

    /// Any template, its data objects written in the order given.
    pub fn template(mut self, id: u8, objects: Vec<DataObject>) -> QrPayloadBuilder {
        self.objects.insert(id, Value::Template(objects));
        self
    }

    /// ID 01.
    pub fn initiation(self, initiation: Initiation) -> QrPayloadBuilder {
        let value = match initiation {
            Initiation::Static => "11",
            Initiation::Dynamic => "12",
        };
        self.primitive(1, value)
    }

    /// A merchant account information template (26-51) or unreserved template (80-99): the GUI
    /// in sub-ID 00, then `fields` in the order given.
    pub fn merchant_account(self, id: u8, gui: &str, fields: &[(u8, &str)]) -> QrPayloadBuilder {
        let mut objects = vec![DataObject::primitive(0, gui)];
        objects.extend(fields.iter().map(|&(sub_id, value)| DataObject::primitive(sub_id, value)));
        self.template(id, objects)
    }

    /// ID 52.
    pub fn mcc(self, mcc: &str) -> QrPayloadBuilder {
        self.primitive(52, mcc)
    }

    /// ID 53, written as 3 digits.
    pub fn currency_numeric(self, currency: u16) -> QrPayloadBuilder {
        self.primitive(53, format!("{currency:03}"))
    }

    /// ID 54, a decimal as it should appear, e.g. "23.72".
    pub fn amount(self, amount: &str) -> QrPayloadBuilder {
        self.primitive(54, amount)
    }

    /// ID 55 = "01".
    pub fn tip_prompt(self) -> QrPayloadBuilder {
        self.primitive(55, "01")
    }

    /// ID 55 = "02" and the fee in 56.
    pub fn fixed_fee(self, fee: &str) -> QrPayloadBuilder {
        self.primitive(55, "02").primitive(56, fee)
    }

    /// ID 55 = "03" and the percentage in 57.
    pub fn percentage_fee(self, percentage: &str) -> QrPayloadBuilder {
        self.primitive(55, "03").primitive(57, percentage)
    }

    /// ID 58.
    pub fn country(self, country: &str) -> QrPayloadBuilder {
        self.primitive(58, country)
    }

    /// ID 59.
    pub fn merchant_name(self, name: &str) -> QrPayloadBuilder {
        self.primitive(59, name)
    }

    /// ID 60.
    pub fn merchant_city(self, city: &str) -> QrPayloadBuilder {
        self.primitive(60, city)
    }

    /// ID 61.
    pub fn postal_code(self, postal_code: &str) -> QrPayloadBuilder {
        self.primitive(61, postal_code)
    }

    /// Template 62 with `fields` (e.g. `(5, "INV-1")` for the reference label) in order.
    pub fn additional_data(self, fields: &[(u8, &str)]) -> QrPayloadBuilder {
        let objects = fields.iter().map(|&(id, value)| DataObject::primitive(id, value)).collect();
        self.template(62, objects)
    }

    /// Template 64.
    pub fn language(self, preference: &str, name: &str, city: Option<&str>) -> QrPayloadBuilder {
        let mut objects = vec![DataObject::primitive(0, preference), DataObject::primitive(1, name)];
        objects.extend(city.map(|city| DataObject::primitive(2, city)));
        self.template(64, objects)
    }

    /// The data objects in the order they are encoded, without the CRC.
    pub fn objects(&self) -> Vec<DataObject> {
        self.objects.iter().map(|(&id, value)| DataObject { id, value: value.clone() }).collect()
    }

    /// The payload string, CRC included, checked only as far as the TLV layer needs.
    pub fn encode(&self) -> Result<String, QrError> {
        tlv::encode(&self.objects())
    }

    /// Encodes and parses: a payload that passes every check, or why it does not.
    pub fn build(&self) -> Result<QrPayload, QrError> {
        QrPayload::parse(&self.encode()?)
    }
}

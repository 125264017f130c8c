//! What sigil's hooks see of a TLS certificate: its serial number, its
//! subject's common name and its subject alternative names.
//!
//! Just enough DER (X.690) to read those fields of an X.509 certificate
//! (RFC 5280 section 4.1), instead of a general X.509 parser and its
//! thirty-odd crates. The certificate is one that rustls has already
//! verified; this only reads it.

use std::net::IpAddr;

/// The fields of a TLS certificate that a handshake hook or a certificate
/// check looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// The serial number, lowercase hex without separators, as the DER
    /// integer's bytes give it (a leading `00` when the high bit is set).
    pub serial: String,
    /// The subject's first common name, if it has one.
    pub common_name: Option<String>,
    /// The DNS names of the subject alternative name extension.
    pub dns_names: Vec<String>,
    /// The IP addresses of the subject alternative name extension.
    pub ip_addresses: Vec<IpAddr>,
    /// The certificate (DER).
    pub der: Vec<u8>,
}

impl CertificateInfo {
    /// Reads serial number, common name and subject alternative names from
    /// a DER certificate; `None` if it is malformed.
    pub fn from_der(der: &[u8]) -> Option<CertificateInfo> {
        let fields = der::fields(der)?;
        Some(CertificateInfo {
            serial: fields.serial.iter().map(|b| format!("{b:02x}")).collect(),
            common_name: fields.common_name,
            dns_names: fields.dns_names,
            ip_addresses: fields.ip_addresses,
            der: der.to_vec(),
        })
    }

    /// Whether the serial number is `serial`: hex, in any case, with or
    /// without `:` separators and leading zeros (`0A:1B`, `0a1b`, `a1b`).
    pub fn serial_is(&self, serial: &str) -> bool {
        normalize_serial(serial).is_some_and(|s| Some(s) == normalize_serial(&self.serial))
    }
}

/// A serial number in one form: lowercase hex digits without separators or
/// leading zeros (`0` for zero). `None` unless `text` is hex digits,
/// optionally separated by `:`.
pub fn normalize_serial(text: &str) -> Option<String> {
    let digits: String = text
        .trim()
        .chars()
        .filter(|&c| c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0" } else { trimmed }.to_owned())
}

mod der {
    use std::net::IpAddr;

    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const INTEGER: u8 = 0x02;
    const OID: u8 = 0x06;
    const BOOLEAN: u8 = 0x01;
    const OCTET_STRING: u8 = 0x04;
    const VERSION: u8 = 0xa0;
    const EXTENSIONS: u8 = 0xa3;
    /// GeneralName dNSName `[2] IA5String` and iPAddress `[7] OCTET STRING`.
    const DNS_NAME: u8 = 0x82;
    const IP_ADDRESS: u8 = 0x87;
    /// id-at-commonName, 2.5.4.3.
    const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    /// id-ce-subjectAltName, 2.5.29.17.
    const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
    /// UTF8String, PrintableString, IA5String: the string types a common
    /// name is written in that are UTF-8 (or ASCII) as they stand.
    const TEXT: [u8; 3] = [0x0c, 0x13, 0x16];

    pub(super) struct Fields<'a> {
        pub(super) serial: &'a [u8],
        pub(super) common_name: Option<String>,
        pub(super) dns_names: Vec<String>,
        pub(super) ip_addresses: Vec<IpAddr>,
    }

    /// One tag-length-value: its tag, its contents and what follows it.
    /// Definite lengths only (DER); `None` for anything malformed.
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes.iter().try_fold(0usize, |len, &b| {
                len.checked_mul(256)?.checked_add(usize::from(b))
            })?;
            (len, rest)
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// The contents of a TLV that must have tag `want`, and what follows.
    fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
        let (tag, contents, rest) = tlv(input)?;
        (tag == want).then_some((contents, rest))
    }

    pub(super) fn fields(der: &[u8]) -> Option<Fields<'_>> {
        let (certificate, _) = expect(der, SEQUENCE)?;
        let (tbs, _) = expect(certificate, SEQUENCE)?;
        let mut rest = tbs;
        if let Some((VERSION, _, after)) = tlv(rest) {
            rest = after;
        }
        let (serial, rest) = expect(rest, INTEGER)?;
        let (_signature, rest) = expect(rest, SEQUENCE)?;
        let (_issuer, rest) = expect(rest, SEQUENCE)?;
        let (_validity, rest) = expect(rest, SEQUENCE)?;
        let (subject, rest) = expect(rest, SEQUENCE)?;
        let (_public_key, mut rest) = expect(rest, SEQUENCE)?;
        let mut fields = Fields {
            serial,
            common_name: first_common_name(subject),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
        };
        // issuerUniqueID [1], subjectUniqueID [2], then extensions [3].
        while !rest.is_empty() {
            let (tag, contents, after) = tlv(rest)?;
            rest = after;
            if tag == EXTENSIONS {
                let (extensions, _) = expect(contents, SEQUENCE)?;
                if let Some(names) = find_extension(extensions, SUBJECT_ALT_NAME) {
                    alt_names(names, &mut fields)?;
                }
            }
        }
        Some(fields)
    }

    /// The value (the contents of the OCTET STRING) of the extension `oid`.
    fn find_extension<'a>(mut extensions: &'a [u8], oid: &[u8]) -> Option<&'a [u8]> {
        while !extensions.is_empty() {
            let (extension, rest) = expect(extensions, SEQUENCE)?;
            extensions = rest;
            let (id, mut value) = expect(extension, OID)?;
            if let Some((BOOLEAN, _, after)) = tlv(value) {
                value = after;
            }
            if id == oid {
                return expect(value, OCTET_STRING).map(|(v, _)| v);
            }
        }
        None
    }

    /// The DNS names and IP addresses of a SubjectAltName (a SEQUENCE OF
    /// GeneralName); other kinds of name are skipped.
    fn alt_names(value: &[u8], fields: &mut Fields<'_>) -> Option<()> {
        let (mut names, _) = expect(value, SEQUENCE)?;
        while !names.is_empty() {
            let (tag, contents, rest) = tlv(names)?;
            names = rest;
            match tag {
                DNS_NAME => fields
                    .dns_names
                    .push(String::from_utf8(contents.to_vec()).ok()?),
                IP_ADDRESS => fields.ip_addresses.push(match contents.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(contents).ok()?),
                    16 => IpAddr::from(<[u8; 16]>::try_from(contents).ok()?),
                    _ => return None,
                }),
                _ => {}
            }
        }
        Some(())
    }

    /// The first common name of a Name (a SEQUENCE OF SET OF
    /// AttributeTypeAndValue) whose value is text.
    fn first_common_name(mut name: &[u8]) -> Option<String> {
        while !name.is_empty() {
            let (mut rdn, rest) = expect(name, SET)?;
            name = rest;
            while !rdn.is_empty() {
                let (attribute, rest) = expect(rdn, SEQUENCE)?;
                rdn = rest;
                let (oid, value) = expect(attribute, OID)?;
                if oid == COMMON_NAME {
                    let (tag, text, _) = tlv(value)?;
                    return TEXT
                        .contains(&tag)
                        .then(|| String::from_utf8(text.to_vec()).ok())
                        .flatten();
                }
            }
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lengths_and_malformed_input() {
            assert_eq!(
                tlv(&[0x02, 0x01, 0x07, 0xff]),
                Some((0x02, &[0x07][..], &[0xff][..]))
            );
            let long = [&[0x04, 0x81, 0x80][..], &[0u8; 128]].concat();
            assert_eq!(tlv(&long).map(|t| t.1.len()), Some(128));
            for bad in [
                &[][..],
                &[0x30],
                &[0x30, 0x05, 0x00],
                &[0x30, 0x80],
                &[0x30, 0x85, 1, 0, 0, 0, 0],
                &[0x30, 0x82, 0x01],
            ] {
                assert_eq!(tlv(bad), None, "{bad:?}");
            }
            assert!(fields(&[0x30, 0x00]).is_none());
        }

        #[test]
        fn subject_alt_names() {
            // SEQUENCE { [2] "a.example", [7] 127.0.0.1, [6] "u" }
            let names = [
                &[0x30, 0x14, 0x82, 0x09][..],
                b"a.example",
                &[0x87, 0x04, 127, 0, 0, 1, 0x86, 0x01, b'u'],
            ]
            .concat();
            let mut f = Fields {
                serial: &[],
                common_name: None,
                dns_names: Vec::new(),
                ip_addresses: Vec::new(),
            };
            assert_eq!(alt_names(&names, &mut f), Some(()));
            assert_eq!(f.dns_names, ["a.example"]);
            assert_eq!(f.ip_addresses, [IpAddr::from([127, 0, 0, 1])]);
            // An address of 5 bytes is malformed.
            assert_eq!(
                alt_names(&[0x30, 0x07, 0x87, 0x05, 1, 2, 3, 4, 5], &mut f),
                None
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_in_every_spelling_are_one() {
        assert_eq!(normalize_serial("0A:1b").as_deref(), Some("a1b"));
        assert_eq!(normalize_serial("00a1b").as_deref(), Some("a1b"));
        assert_eq!(normalize_serial(" 00 ").as_deref(), Some("0"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(normalize_serial(""), None);
        assert_eq!(normalize_serial(":"), None);
    }
}

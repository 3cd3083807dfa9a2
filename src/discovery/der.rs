//! Just enough DER to read the subject of an X.509 certificate: the GX's HTTPS
//! certificate says `O=Victron Energy, OU=Venus OS, CN=venus.local`.

/// One TLV: tag, contents, and the bytes after it.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xA0;

/// The subject's attributes as (short name, value), e.g. `("O", "Victron Energy")`.
/// Attributes other than C, ST, L, O, OU and CN are left out.
pub fn subject(certificate: &[u8]) -> Option<Vec<(&'static str, String)>> {
    let (tag, cert, _) = read_tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = read_tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let (tag, _, after) = read_tlv(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = read_tlv(rest)?.2;
    }
    let (tag, mut name, _) = read_tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }

    let mut out = Vec::new();
    while !name.is_empty() {
        let (tag, mut set, after) = read_tlv(name)?;
        name = after;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (_, attribute, after) = read_tlv(set)?;
            set = after;
            let (tag, oid, value) = read_tlv(attribute)?;
            if tag != OID {
                return None;
            }
            let (_, text, _) = read_tlv(value)?;
            let short = match oid {
                [0x55, 0x04, 0x06] => "C",
                [0x55, 0x04, 0x08] => "ST",
                [0x55, 0x04, 0x07] => "L",
                [0x55, 0x04, 0x0A] => "O",
                [0x55, 0x04, 0x0B] => "OU",
                [0x55, 0x04, 0x03] => "CN",
                _ => continue,
            };
            out.push((short, String::from_utf8_lossy(text).into_owned()));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_subject_of_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["venus.local".to_string()]).unwrap();
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CountryName, "NL");
        name.push(rcgen::DnType::OrganizationName, "Victron Energy");
        name.push(rcgen::DnType::OrganizationalUnitName, "Venus OS");
        name.push(rcgen::DnType::CommonName, "venus.local");
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();

        let subject = subject(cert.der()).unwrap();
        assert!(subject.contains(&("O", "Victron Energy".to_string())), "{subject:?}");
        assert!(subject.contains(&("OU", "Venus OS".to_string())));
        assert!(subject.contains(&("CN", "venus.local".to_string())));
        assert!(subject.contains(&("C", "NL".to_string())));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(subject(&[]), None);
        assert_eq!(subject(&[0x30, 0x82, 0xff]), None);
        assert_eq!(subject(&[0x02, 0x01, 0x00]), None);
    }
}

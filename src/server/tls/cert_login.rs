//! The user name a verified client certificate stands for, as RabbitMQ's
//! `rabbit_auth_mechanism_ssl` derives it (`ssl_cert_login_from`): the subject's common name,
//! the whole distinguished name in RabbitMQ's RFC 4514 form (most specific first, `,` between
//! attributes: `CN=tls-user,O=Lagomorph Tests,C=GB`), or one subject alternative name.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

/// Where the EXTERNAL user name comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertLogin {
    /// The subject's common name (several are joined with `,`, as RabbitMQ does).
    CommonName,
    /// The subject's distinguished name, RabbitMQ's string form.
    DistinguishedName,
    /// The `index`th subject alternative name of `kind` (0-based; RabbitMQ's
    /// `ssl_cert_login_san_type` and `ssl_cert_login_san_index`).
    SubjectAlternativeName {
        /// `dns`, `ip`, `email` or `uri`.
        kind: SanKind,
        /// Which one of that kind.
        index: usize,
    },
}

/// A kind of subject alternative name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanKind {
    /// `dNSName`.
    Dns,
    /// `iPAddress`, written as text (`127.0.0.1`, `::1`).
    Ip,
    /// `rfc822Name`.
    Email,
    /// `uniformResourceIdentifier`.
    Uri,
}

/// The user name in a DER certificate, or why there is none (logged, never sent to the client).
pub fn login_name(der: &[u8], from: &CertLogin) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let name = match from {
        CertLogin::CommonName => {
            let cns: Vec<&str> = cert
                .subject()
                .iter_common_name()
                .filter_map(|a| a.as_str().ok())
                .collect();
            cns.join(",")
        }
        CertLogin::DistinguishedName => distinguished_name(cert.subject()),
        CertLogin::SubjectAlternativeName { kind, index } => {
            let sans = cert
                .subject_alternative_name()
                .map_err(|e| format!("bad subjectAltName extension: {e}"))?;
            let names = sans.map(|ext| ext.value.general_names.clone());
            names
                .unwrap_or_default()
                .iter()
                .filter_map(|n| san_text(n, *kind))
                .nth(*index)
                .unwrap_or_default()
        }
    };
    if name.is_empty() {
        return Err(format!(
            "the client certificate has no {}",
            match from {
                CertLogin::CommonName => "common name",
                CertLogin::DistinguishedName => "subject",
                CertLogin::SubjectAlternativeName { .. } => "such subject alternative name",
            }
        ));
    }
    Ok(name)
}

fn san_text(name: &GeneralName<'_>, kind: SanKind) -> Option<String> {
    match (name, kind) {
        (GeneralName::DNSName(s), SanKind::Dns)
        | (GeneralName::RFC822Name(s), SanKind::Email)
        | (GeneralName::URI(s), SanKind::Uri) => Some((*s).to_owned()),
        (GeneralName::IPAddress(b), SanKind::Ip) => match b.len() {
            4 => <[u8; 4]>::try_from(*b)
                .ok()
                .map(|a| std::net::Ipv4Addr::from(a).to_string()),
            16 => <[u8; 16]>::try_from(*b)
                .ok()
                .map(|a| std::net::Ipv6Addr::from(a).to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// RabbitMQ's `rabbit_ssl:format_rdn_sequence`: the RDNs last to first, joined with `,`;
/// attributes of one RDN joined with `+`; short names for the usual attribute types and the
/// dotted OID for others; values escaped as RFC 4514 says.
fn distinguished_name(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let key = short_name(&oid).map_or(oid.clone(), str::to_owned);
                    let value = atv.as_str().map_or_else(
                        |_| String::from_utf8_lossy(atv.attr_value().data).into_owned(),
                        str::to_owned,
                    );
                    format!("{key}={}", escape(&value))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RabbitMQ's names for attribute types (`rabbit_cert_info:format_rdn`).
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATIONQUALIFIER",
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "TITLE",
        "2.5.4.6" => "C",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.65" => "PSEUDONYM",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 4514 section 2.4: `,+"\<>;` escaped with a backslash, and a leading `#` or space and a
/// trailing space.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_rfc4514() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("#1"), "\\#1");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(login_name(b"not a certificate", &CertLogin::CommonName).is_err());
    }
}

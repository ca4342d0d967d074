//! `type = "http"`: request a URL and judge its status, body and certificate.

use checks::{HttpProbe, Probe};
use toml::de::DeValue;

use super::super::reader::{Reader, Value};
use super::shared::{Table, headers};
use super::{Key, ProbeType};

pub const HTTP: ProbeType = ProbeType {
    name: "http",
    about: "An HTTP or HTTPS URL, its status, body and certificate",
    host: true,
    keys: &[
        Key::new("url", "an http:// or https:// URL"),
        Key::new("method", "the request method (GET)"),
        Key::new("status", "the statuses that pass (200 to 399)"),
        Key::new("contains", "a substring the body must contain"),
        Key::new("matches", "a regular expression the body must match"),
        Key::new("headers", "a table of request headers"),
        Key::new(
            "cert-min-days",
            "fail when the certificate expires within this many days",
        ),
        Key::new(
            "tls-verify",
            "false accepts a certificate that does not verify",
        ),
    ],
    parse,
};

fn parse(r: &mut Reader<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let url = t.required(r, "url")?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        if let Some(uv) = t.get("url") {
            r.error(uv.span(), "`url` must start with http:// or https://", None);
        }
        return None;
    }
    if let Err(e) = checks::check_url(&url) {
        if let Some(uv) = t.get("url") {
            r.error(uv.span(), format!("`url` cannot be requested: {e}"), None);
        }
        return None;
    }
    let method = t
        .string(r, "method")
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    if let Err(e) = checks::check_method(&method) {
        if let Some(mv) = t.get("method") {
            r.error(mv.span(), format!("`method`: {e}"), None);
        }
        return None;
    }
    let mut status = Vec::new();
    if let Some(sv) = t.get("status") {
        let items: Vec<&Value<'_>> = match sv.get_ref() {
            DeValue::Array(a) => a.iter().collect(),
            _ => vec![sv],
        };
        for item in items {
            match r.integer("status", item).map(u16::try_from) {
                Some(Ok(c)) if (100..600).contains(&c) => status.push(c),
                Some(_) => r.error(item.span(), "an HTTP status is between 100 and 599", None),
                None => {}
            }
        }
    }
    let headers = headers(r, t.t);
    let cert_min_days = t.get("cert-min-days").and_then(|v| {
        match r.integer("cert-min-days", v).map(u32::try_from) {
            Some(Ok(d)) => Some(d),
            Some(Err(_)) => {
                r.error(v.span(), "`cert-min-days` must be 0 or more", None);
                None
            }
            None => None,
        }
    });
    if cert_min_days.is_some() && !url.starts_with("https://") {
        r.error(
            t.whole.span(),
            "`cert-min-days` needs an https:// url",
            None,
        );
    }
    let tls_verify = t
        .get("tls-verify")
        .and_then(|v| r.bool("tls-verify", v))
        .unwrap_or(true);
    Some(Probe::Http(HttpProbe {
        url,
        method,
        status,
        contains: t.string(r, "contains"),
        matches: t.pattern(r, "matches"),
        headers,
        cert_min_days,
        tls_verify,
    }))
}

//! A job's configuration fingerprint, for the record a daemon leaves for the next one
//! (`daemon/record.rs`): the same for the same configuration in every build of
//! guardian, so that an upgraded daemon does not take every job for changed.
//!
//! It is FNV-1a over a canonical form of what the job's file says, as parsed: the
//! job's name, then each table's keys in sorted order, each value tagged with its type
//! and written by its value (an integer as a number, whatever its radix or its `_`
//! separators), so that moving keys about, re-indenting or re-quoting the file changes
//! nothing. A default that a new release changes does not count as a change: the job
//! keeps running and its next start takes the new default.

use toml::de::{DeTable, DeValue};

/// A spec's fingerprint. It takes no part in comparing specs: two files that say the
/// same in other words (an explicit default) are the same job to a reload; it is only
/// for telling, across daemons, whether a job's file changed.
#[derive(Clone, Copy, Default)]
pub struct Fingerprint(pub u64);

impl PartialEq for Fingerprint {
    fn eq(&self, _: &Fingerprint) -> bool {
        true
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The fingerprint of job `name` whose file parsed as `table`.
pub fn of(name: &str, table: &DeTable<'_>) -> u64 {
    let mut h = Fnv::new();
    h.bytes(b"guardian-job-v1\0");
    h.text(name);
    table_into(&mut h, table);
    h.0
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// A length, then the bytes: no two texts run into each other.
    fn text(&mut self, s: &str) {
        self.bytes(&(s.len() as u64).to_le_bytes());
        self.bytes(s.as_bytes());
    }
}

fn table_into(h: &mut Fnv, table: &DeTable<'_>) {
    let mut keys: Vec<(&str, &DeValue<'_>)> = table
        .iter()
        .map(|(k, v)| (k.get_ref().as_ref(), v.get_ref()))
        .collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
    h.bytes(b"{");
    h.bytes(&(keys.len() as u64).to_le_bytes());
    for (k, v) in keys {
        h.text(k);
        value_into(h, v);
    }
    h.bytes(b"}");
}

fn value_into(h: &mut Fnv, v: &DeValue<'_>) {
    match v {
        DeValue::String(s) => {
            h.bytes(b"s");
            h.text(s);
        }
        DeValue::Integer(i) => match i128::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => {
                h.bytes(b"i");
                h.bytes(&n.to_le_bytes());
            }
            Err(_) => {
                h.bytes(b"I");
                h.text(i.as_str());
            }
        },
        DeValue::Float(f) => {
            h.bytes(b"f");
            match f.as_str().replace('_', "").parse::<f64>() {
                Ok(x) => h.bytes(&x.to_bits().to_le_bytes()),
                Err(_) => h.text(f.as_str()),
            }
        }
        DeValue::Boolean(b) => h.bytes(if *b { b"t" } else { b"F" }),
        DeValue::Datetime(d) => {
            h.bytes(b"d");
            h.text(&d.to_string());
        }
        DeValue::Array(items) => {
            h.bytes(b"[");
            h.bytes(&(items.len() as u64).to_le_bytes());
            for item in items {
                value_into(h, item.get_ref());
            }
            h.bytes(b"]");
        }
        DeValue::Table(t) => table_into(h, t),
    }
}

#[cfg(test)]
mod tests {
    use super::of;

    fn fp(name: &str, text: &str) -> u64 {
        let table = toml::de::DeTable::parse(text).expect("toml");
        of(name, table.get_ref())
    }

    const WEB: &str = "exec = \"/bin/web --port 80\"\nrespawn = true\nkill-timeout = \"5s\"\n[env]\nA = \"1\"\nB = \"2\"\n[[check]]\ntype = \"tcp\"\nport = 80\n";

    #[test]
    fn the_same_across_reorder_and_spelling() {
        let moved = "respawn = true\nkill-timeout = '5s'\n\n  exec = \"/bin/web --port 80\"\n[env]\nB = \"2\"\nA = \"1\"\n[[check]]\nport = 0x50\ntype = \"tcp\"\n";
        assert_eq!(fp("web", WEB), fp("web", moved));
        assert_eq!(fp("x", "a.b = 1_000"), fp("x", "[a]\nb = 1000"));
    }

    #[test]
    fn another_for_any_change() {
        let a = fp("web", WEB);
        assert_ne!(a, fp("api", WEB));
        assert_ne!(a, fp("web", &WEB.replace("80\"", "81\"")));
        assert_ne!(
            a,
            fp("web", &WEB.replace("respawn = true", "respawn = false"))
        );
        assert_ne!(
            a,
            fp(
                "web",
                &WEB.replace("port = 80", "port = 80\ntimeout = \"1s\"")
            )
        );
        // A string and an integer that read alike differ; so do nested and flat keys.
        assert_ne!(fp("x", "a = \"1\""), fp("x", "a = 1"));
        assert_ne!(fp("x", "a.b = 1"), fp("x", "a = 1\nb = 1"));
        assert_ne!(fp("x", "a = [1, 2]"), fp("x", "a = [2, 1]"));
    }

    /// The form is fixed, not the compiler's: a rebuild, any layout of the config types,
    /// gives this number for this file.
    #[test]
    fn a_known_value() {
        assert_eq!(fp("web", WEB), PINNED);
    }

    const PINNED: u64 = 16_751_012_363_875_282_357;
}

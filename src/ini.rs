//! `~/.offlineimaprc` read as OfflineIMAP's Python `ConfigParser` reads it:
//! sections and keys case-folded, `[DEFAULT]` seen by every section, and
//! `%(name)s` replaced, when a value is read, by that key's value from the
//! same section or `[DEFAULT]` (`%%` is a `%`).

use std::collections::HashMap;

/// Sections (lower-cased, spaces folded) to keys (lower-cased) to values.
pub type Sections = HashMap<String, HashMap<String, String>>;

/// How deep references may nest (Python's `MAX_INTERPOLATION_DEPTH`).
const DEPTH: usize = 10;

/// Every section of `text` as written, `[DEFAULT]`'s keys added to each.
pub fn parse(text: &str) -> Sections {
    let mut sections = read(text);
    let defaults = sections.get("default").cloned().unwrap_or_default();
    for section in sections.values_mut() {
        for (key, value) in &defaults {
            section.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    sections
}

/// `keys` of `section` (those it has), their references replaced; an error
/// names the key and the reference that cannot be replaced.
pub fn resolve(section: &HashMap<String, String>, keys: &[&str]) -> Result<HashMap<String, String>, String> {
    let mut resolved = HashMap::new();
    for key in keys {
        if let Some(value) = section.get(*key) {
            let value = interpolate(value, section, DEPTH).map_err(|why| format!("{key} {why}"))?;
            resolved.insert(key.to_string(), value);
        }
    }
    Ok(resolved)
}

/// Sections as written.
fn read(text: &str) -> Sections {
    let mut sections = Sections::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            current = fold(name);
            continue;
        }
        if let Some((key, value)) = line.split_once(['=', ':']) {
            sections
                .entry(current.clone())
                .or_default()
                .insert(key.trim().to_lowercase(), value.trim().to_string());
        }
    }
    sections
}

/// A section's name as [`parse`] keys it.
pub fn fold(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// `value` with its references replaced from `section`, or why one cannot be.
fn interpolate(value: &str, section: &HashMap<String, String>, depth: usize) -> Result<String, String> {
    if !value.contains('%') {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('%') {
            out.push('%');
            rest = after;
            continue;
        }
        let Some((name, after)) = rest.strip_prefix('(').and_then(|inner| inner.split_once(")s")) else {
            return Err("holds a % that starts no %(name)s (write %% for a %)".into());
        };
        let Some(referred) = section.get(&name.to_lowercase()) else {
            return Err(format!(
                "holds %({name})s, which names no setting of its section or [DEFAULT]"
            ));
        };
        if depth == 0 {
            return Err("holds references that go round in a circle".into());
        }
        out.push_str(&interpolate(referred, section, depth - 1)?);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases as data: (a section's lines, key, value read or the error).
    const CASES: &[(&str, &str, Result<&str, &str>)] = &[
        ("host = imap.example.org", "host", Ok("imap.example.org")),
        (
            "domain = example.org\nhost = imap.%(domain)s",
            "host",
            Ok("imap.example.org"),
        ),
        (
            "Domain = example.org\nhost = imap.%(DOMAIN)s",
            "host",
            Ok("imap.example.org"),
        ),
        ("pass = 100%%", "pass", Ok("100%")),
        ("user = %(base)s", "user", Ok("me")),
        (
            "host = imap.%(nowhere)s",
            "host",
            Err("host holds %(nowhere)s, which names no setting of its section or [DEFAULT]"),
        ),
        (
            "host = %(b)s\nb = %(host)s",
            "host",
            Err("host holds references that go round in a circle"),
        ),
        (
            "pass = 100%",
            "pass",
            Err("pass holds a % that starts no %(name)s (write %% for a %)"),
        ),
    ];

    #[test]
    fn values_are_interpolated_as_offlineimap_does() {
        for (lines, key, expected) in CASES {
            let text = format!("[DEFAULT]\nbase = me\n[Repository Remote]\n{lines}\n");
            let sections = parse(&text);
            let read =
                resolve(&sections["repository remote"], &[key]).map(|mut found| found.remove(*key).unwrap());
            assert_eq!(
                read.as_deref(),
                expected.map_err(str::to_string).as_deref(),
                "{lines}"
            );
        }
    }

    #[test]
    fn default_is_seen_by_every_section_and_a_section_wins() {
        let sections = parse("[DEFAULT]\nssl = no\nsep = .\n[Repository A]\nssl = yes\n");
        assert_eq!(sections["repository a"]["ssl"], "yes");
        assert_eq!(sections["repository a"]["sep"], ".");
    }
}

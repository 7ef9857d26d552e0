//! Secrets: environment variables whose values must never appear in a log, artifact or report.
//!
//! A variable is secret when the config names it in `secrets` or its name ends in `_TOKEN`,
//! `_SECRET`, `_PASSWORD` or `_KEY`. Commands receive the real values; everything opsflow
//! writes goes through [`Secrets::mask`], which replaces each value with `***`, and the forms
//! a command or a template can turn it into: escaped for markdown and JSON, URL-encoded, hex
//! and base64 (as GitHub Actions' runner registers its encoded variants; see [`encoded_forms`]).

use std::collections::BTreeSet;
use std::sync::Mutex;

use base64::Engine as _;

const SECRET_SUFFIXES: [&str; 4] = ["_TOKEN", "_SECRET", "_PASSWORD", "_KEY"];

/// Values shorter than this are not masked: masking `1` or `ab` would garble every log.
const MIN_SECRET_LEN: usize = 4;

/// The line width of `base64` (coreutils) and of `xxd -p`: a long value's encoding is printed
/// in lines this wide, and logs are masked line by line.
const BASE64_LINE: usize = 76;
const HEX_LINE: usize = 60;

/// The secrets already warned about as too short to mask, so each is named once per process
/// however often the secrets are collected (every reconcile of the daemon does).
static WARNED_SHORT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Whether a line of a multi-line value is long enough, and more than punctuation (a
/// `-----` line of a PEM block), to be masked on its own.
fn is_maskable(value: &str) -> bool {
    value.len() >= MIN_SECRET_LEN && value.chars().any(char::is_alphanumeric)
}

/// The forms of `value` a command may print or a file may hold besides the value itself:
///
/// - URL-encoded (RFC 3986: every byte but `A-Z a-z 0-9 - . _ ~` as `%XX`), also with `%xx`
///   in lower case and with a space as `+` (HTML forms);
/// - hex, in lower and upper case, whole and cut into `xxd -p`'s lines of 60;
/// - base64, standard and URL-safe alphabets, without padding, at each of the three
///   alignments a value can have inside a longer encoded text: the value's bytes from offset
///   0, 1 and 2 are encoded, once whole (the value ends the encoded text) and once only up to
///   the last complete group of three bytes (more bytes follow it, which change the last
///   characters). The characters that depend on unknown bytes around the value are never part
///   of a form, so a form matches whatever surrounds the value; the aligned encoding is also
///   cut into `base64`'s lines of 76.
pub fn encoded_forms(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let mut forms = Vec::new();
    let url: String = bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    if url != value {
        forms.push(lower_percent_escapes(&url));
        forms.push(url.replace("%20", "+"));
        forms.push(url);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    forms.extend(lines_of(&hex, HEX_LINE));
    forms.push(hex.to_uppercase());
    forms.push(hex);
    for engine in [base64::engine::general_purpose::STANDARD_NO_PAD, base64::engine::general_purpose::URL_SAFE_NO_PAD] {
        for offset in 0..3.min(bytes.len()) {
            let from = &bytes[offset..];
            let whole = engine.encode(from);
            if offset == 0 {
                forms.extend(lines_of(&whole, BASE64_LINE));
            }
            forms.push(whole);
            forms.push(engine.encode(&from[..from.len() / 3 * 3]));
        }
    }
    forms
}

/// `%2F` as `%2f`: some encoders write the hex digits in lower case.
fn lower_percent_escapes(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        out.push_str(&escape.to_ascii_lowercase());
        rest = &rest[at + escape.len()..];
    }
    out.push_str(rest);
    out
}

/// The full lines of `text` cut `width` wide, and the last one, when there is more than one.
fn lines_of(text: &str, width: usize) -> Vec<String> {
    if text.len() <= width {
        return Vec::new();
    }
    text.as_bytes().chunks(width).map(|chunk| String::from_utf8_lossy(chunk).into_owned()).collect()
}

#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Longest first, so a secret that contains another is masked whole.
    values: Vec<String>,
}

impl Secrets {
    /// Collects the secret values from the process environment.
    pub fn from_env(named: &[String]) -> Secrets {
        Self::from_vars(std::env::vars(), named)
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>, named: &[String]) -> Secrets {
        let mut values: Vec<String> = Vec::new();
        for (name, value) in vars {
            if !(named.contains(&name) || SECRET_SUFFIXES.iter().any(|s| name.ends_with(s))) {
                continue;
            }
            if !value.is_empty() && value.len() < MIN_SECRET_LEN {
                warn_short(&name);
            }
            // Logs are masked line by line, so a multi-line value (a PEM key) never appears
            // whole in one: each of its lines is a secret too.
            if value.contains(['\n', '\r']) {
                values.extend(value.lines().map(str::trim).filter(|line| is_maskable(line)).map(str::to_owned));
            }
            values.push(value);
        }
        // The forms a value takes once escaped for markdown or JSON are masked too: masking
        // happens before escaping wherever opsflow escapes, but a value that reached a file
        // through another way must not leak in escaped form either.
        let escaped: Vec<String> =
            values.iter().flat_map(|v| [crate::render::markdown_escape(v), crate::render::json_escape(v)]).collect();
        // A command can print a value in other shapes: `base64`, `xxd -p`, a URL's query.
        let encoded: Vec<String> =
            values.iter().filter(|v| v.len() >= MIN_SECRET_LEN).flat_map(|v| encoded_forms(v)).collect();
        values.extend(escaped);
        values.extend(encoded);
        values.retain(|value| value.len() >= MIN_SECRET_LEN);
        // Longest first; equal values side by side, so `dedup` removes every repeat.
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Secrets { values }
    }

    /// The length of the longest value masked: a stream cut into pieces must keep this much
    /// of one piece before the next to be sure no secret spans the cut.
    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, String::len)
    }

    /// The end of an occurrence of a secret in `bytes` that starts before `cut` and ends after
    /// it, if there is one.
    pub fn end_of_spanning(&self, bytes: &[u8], cut: usize) -> Option<usize> {
        self.values.iter().find_map(|value| {
            let needle = value.as_bytes();
            let from = (cut + 1).saturating_sub(needle.len());
            let to = (cut + needle.len() - 1).min(bytes.len());
            if from >= cut || to <= from {
                return None;
            }
            let at = bytes[from..to].windows(needle.len()).position(|window| window == needle)?;
            Some(from + at + needle.len())
        })
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), "***");
            }
        }
        out
    }

    /// Masks every string inside a JSON value.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => *s = self.mask(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.mask_json(v)),
            _ => {}
        }
    }
}

/// Warns, once per process, that the secret `name` is too short to be masked.
fn warn_short(name: &str) {
    let mut warned = WARNED_SHORT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if warned.insert(name.to_owned()) {
        tracing::warn!(
            "the secret {name} is shorter than {MIN_SECRET_LEN} characters and cannot be masked safely \
             (masking it would garble every log); it may appear in logs and artifacts: use a longer value"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_named_and_suffixed_variables() {
        let vars =
            [("DEPLOY_TOKEN", "tok-123456"), ("DB_PASSWORD", "hunter22"), ("HOME", "/root"), ("SHORT_KEY", "ab")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let secrets = Secrets::from_vars(vars, &[]);
        assert_eq!(secrets.mask("t=tok-123456 p=hunter22 h=/root ab"), "t=*** p=*** h=/root ab");
    }

    #[test]
    fn each_line_of_a_multi_line_value_and_escaped_forms_are_masked() {
        let key =
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nbG9uZ2xpbmU=\n-----END PRIVATE KEY-----\n";
        let vars = [("TLS_KEY", key), ("DB_PASSWORD", r"pa\ss\word")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        let secrets = Secrets::from_vars(vars, &[]);
        assert_eq!(secrets.mask("line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), "line: ***");
        assert_eq!(secrets.mask("bG9uZ2xpbmU="), "***");
        assert_eq!(secrets.mask(r"md: pa\\ss\\word"), "md: ***");
        assert_eq!(secrets.mask("---\n"), "---\n", "punctuation alone is never masked");
    }

    /// A secret printed through `base64`, `xxd -p` or a URL encoder reached run logs and
    /// committed artifacts (INFRA08, INFRA09) unmasked: only its raw form was masked.
    #[test]
    fn url_encoded_hex_and_base64_forms_of_a_secret_are_masked() {
        let secret = "s3cr3t/p@ss w0rd!";
        let secrets = Secrets::from_vars([("DEPLOY_TOKEN".to_owned(), secret.to_owned())], &[]);
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        // Alone, and after 1 and 2 bytes of a prefix (`user:` and the like), and followed by a
        // newline (`echo`): each of the three alignments, whatever follows.
        for prefix in ["", "u", "us", "user:", "admin:"] {
            for suffix in ["", "\n", "x", "xy"] {
                let encoded = b64(format!("{prefix}{secret}{suffix}").as_bytes());
                let masked = secrets.mask(&encoded);
                assert!(masked.contains("***"), "{prefix:?} {suffix:?}: {encoded} -> {masked}");
                // What stays is the prefix's and suffix's own encoding and at most two
                // characters each side that carry bits of both.
                let around = (prefix.len() + suffix.len()) * 4 / 3 + 6;
                assert!(masked.replace("***", "").trim_end_matches('=').len() <= around, "{encoded} -> {masked}");
            }
        }
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        assert_eq!(secrets.mask(&url_safe), "***");
        assert_eq!(secrets.mask(&hex(secret.as_bytes())), "***");
        assert_eq!(secrets.mask(&hex(secret.as_bytes()).to_uppercase()), "***");
        assert_eq!(secrets.mask("?p=s3cr3t%2Fp%40ss%20w0rd%21&q=1"), "?p=***&q=1");
        assert_eq!(secrets.mask("?p=s3cr3t%2fp%40ss%20w0rd%21"), "?p=***");
        assert_eq!(secrets.mask("s3cr3t%2Fp%40ss+w0rd%21"), "***");
    }

    /// `base64` and `xxd -p` print a long value's encoding in lines; logs are masked line by
    /// line, so each line is masked.
    #[test]
    fn the_lines_of_a_long_secret_s_base64_and_hex_are_masked() {
        let secret = "x".repeat(40) + &"y".repeat(40);
        let secrets = Secrets::from_vars([("LONG_SECRET".to_owned(), secret.clone())], &[]);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&secret);
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        for line in encoded.as_bytes().chunks(76).chain(hex.as_bytes().chunks(60)) {
            let line = std::str::from_utf8(line).unwrap();
            let masked = secrets.mask(line);
            assert!(masked.starts_with("***"), "{line} -> {masked}");
        }
    }

    #[test]
    fn a_short_secret_is_not_masked_and_text_without_secrets_is_left_as_it_is() {
        let secrets = Secrets::from_vars([("PIN_SECRET".to_owned(), "123".to_owned())], &[]);
        assert_eq!(secrets.mask("pin 123, hex 313233, b64 MTIz"), "pin 123, hex 313233, b64 MTIz");
    }
}

//! Secrets: environment variables whose values must never appear in a log, artifact or report.
//!
//! A variable is secret when the config names it in `secrets` or its name ends in `_TOKEN`,
//! `_SECRET`, `_PASSWORD` or `_KEY`. Commands receive the real values; everything opsflow
//! writes goes through [`Secrets::mask`], which replaces each value with `***`.

const SECRET_SUFFIXES: [&str; 4] = ["_TOKEN", "_SECRET", "_PASSWORD", "_KEY"];

/// Values shorter than this are not masked: masking `1` or `ab` would garble every log.
const MIN_SECRET_LEN: usize = 4;

/// Whether a line of a multi-line value is long enough, and more than punctuation (a
/// `-----` line of a PEM block), to be masked on its own.
fn is_maskable(value: &str) -> bool {
    value.len() >= MIN_SECRET_LEN && value.chars().any(char::is_alphanumeric)
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
        values.extend(escaped);
        values.retain(|value| value.len() >= MIN_SECRET_LEN);
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
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
}

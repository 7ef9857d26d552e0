//! Secrets: environment variables whose values must never appear in a log, artifact or report.
//!
//! A variable is secret when the config names it in `secrets` or its name ends in `_TOKEN`,
//! `_SECRET`, `_PASSWORD` or `_KEY`. Commands receive the real values; everything opsflow
//! writes goes through [`Secrets::mask`], which replaces each value with `***`.

const SECRET_SUFFIXES: [&str; 4] = ["_TOKEN", "_SECRET", "_PASSWORD", "_KEY"];

/// Values shorter than this are not masked: masking `1` or `ab` would garble every log.
const MIN_SECRET_LEN: usize = 4;

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
        let mut values: Vec<String> = vars
            .into_iter()
            .filter(|(name, _)| named.iter().any(|n| n == name) || SECRET_SUFFIXES.iter().any(|s| name.ends_with(s)))
            .map(|(_, value)| value)
            .filter(|value| value.len() >= MIN_SECRET_LEN)
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Secrets { values }
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
}

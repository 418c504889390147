//! The server API's keys.

use super::Config;

/// A server API key; never printed (its `Debug` is redacted).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(redacted)")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = String;

    /// Never fails: clap would print a refused value, and this one is a
    /// secret. [`Config::api_keys`] checks them.
    fn from_str(key: &str) -> Result<Self, String> {
        Ok(Self(key.trim().to_owned()))
    }
}

impl Config {
    /// The server API's keys; none means the API is off. `API_KEYS=` (set
    /// but empty, as compose files pass it) is no key. The error names the
    /// key by its place, never by its value.
    pub fn api_keys(&self) -> anyhow::Result<Vec<ApiKey>> {
        let keys: Vec<ApiKey> = self
            .api_keys
            .iter()
            .filter(|key| !key.0.is_empty())
            .cloned()
            .collect();
        for (place, key) in keys.iter().enumerate() {
            anyhow::ensure!(
                (16..=256).contains(&key.0.len()) && key.0.bytes().all(|b| b.is_ascii_graphic()),
                "API_KEYS: key {} of {} has {} characters; a key needs 16 to 256 printable \
                 ASCII characters without spaces",
                place + 1,
                keys.len(),
                key.0.len()
            );
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn a_bad_api_key_is_refused_without_being_repeated() {
        let mut config = Config::parse_from(["rookery"]);
        config.api_keys = vec![
            "good-key-0123456789".parse().unwrap(),
            "s3cret".parse().unwrap(),
        ];
        let err = config.api_keys().unwrap_err().to_string();
        assert!(err.contains("key 2 of 2"), "{err}");
        assert!(
            !err.contains("s3cret") && !err.contains("good-key"),
            "{err}"
        );
        config.api_keys = vec!["".parse().unwrap()];
        assert!(config.api_keys().unwrap().is_empty(), "API_KEYS= is no key");
    }
}

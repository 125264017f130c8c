//! `replay_store`: where a server keeps the hellos it has seen.

use std::fmt;

use super::REDACTED;

/// Where a server keeps its replay cache (`replay_store`).
///
/// `memory` (the default) is a cache in the server's own memory: right for
/// one server, wrong for several behind a load balancer, where a hello
/// captured on its way to one could be replayed to another. Servers that
/// share clients share a store: `redis://HOST[:PORT][/DB]` (with
/// `redis://[USER][:PASSWORD]@HOST…` when Redis asks for a password) or
/// `redis+unix:///PATH[?db=DB]`.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ReplayStoreLocation {
    /// The server's own memory.
    #[default]
    Memory,
    /// A Redis server.
    Redis(RedisUrl),
}

/// A Redis URL, which may hold a password: shown with its user
/// information as `<redacted>`, and only
/// [`dangerous_as_str`](Self::dangerous_as_str) gives the text.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

/// What `replay_store` takes, for errors.
pub(super) const EXPECTED: &str =
    "memory, redis://HOST[:PORT][/DB] or redis+unix:///PATH (for a shared replay store)";

impl ReplayStoreLocation {
    /// Reads a `replay_store` value. The error says what was expected,
    /// never what was found (it may hold a password).
    pub fn parse(text: &str) -> Result<ReplayStoreLocation, String> {
        let text = text.trim();
        if text == "memory" {
            return Ok(ReplayStoreLocation::Memory);
        }
        let fail = || format!("expected {EXPECTED}");
        if let Some(rest) = text.strip_prefix("redis://") {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let db = path.split_once('?').map_or(path, |(db, _)| db);
            if host.is_empty() || !db.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail());
            }
        } else if let Some(path) = text.strip_prefix("redis+unix://") {
            if !path.starts_with('/') {
                return Err(fail());
            }
        } else {
            return Err(fail());
        }
        Ok(ReplayStoreLocation::Redis(RedisUrl(text.to_owned())))
    }

    /// `memory`, or the URL with its user information redacted.
    pub fn redacted(&self) -> String {
        match self {
            ReplayStoreLocation::Memory => "memory".to_owned(),
            ReplayStoreLocation::Redis(url) => url.redacted(),
        }
    }
}

impl RedisUrl {
    /// The URL as written, password included: for the Redis client only,
    /// never for a log or a message.
    pub fn dangerous_as_str(&self) -> &str {
        &self.0
    }

    /// The URL with anything before an `@` of its authority (user and
    /// password) replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return REDACTED.to_owned();
        };
        let end = rest.find('/').unwrap_or(rest.len());
        match rest[..end].rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://{REDACTED}@{host}{}", &rest[end..]),
            None => self.0.clone(),
        }
    }
}

/// `Debug` and `Display` show the redacted text only.
macro_rules! shown_redacted {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.redacted())
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.redacted())
            }
        }
    )*};
}

shown_redacted!(ReplayStoreLocation, RedisUrl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            ReplayStoreLocation::parse("memory"),
            Ok(ReplayStoreLocation::Memory)
        );
        for good in [
            "redis://127.0.0.1:6379/0",
            "redis://localhost",
            "redis://:s3cret@10.0.0.5:6380/2",
            "redis://app:s3cret@cache/1?protocol=resp3",
            "redis+unix:///run/redis.sock",
        ] {
            let parsed = ReplayStoreLocation::parse(good).unwrap();
            let ReplayStoreLocation::Redis(url) = &parsed else {
                panic!("{good} is not redis");
            };
            assert_eq!(url.dangerous_as_str(), good);
            assert!(!parsed.to_string().contains("s3cret"), "{parsed}");
            assert!(!format!("{parsed:?}").contains("s3cret"));
        }
        assert_eq!(
            ReplayStoreLocation::parse("redis://:s3cret@10.0.0.5:6380/2")
                .unwrap()
                .to_string(),
            "redis://<redacted>@10.0.0.5:6380/2"
        );
    }

    #[test]
    fn fail_bad_locations_say_nothing_of_the_value() {
        for bad in [
            "",
            "Memory",
            "redis://",
            "redis://:s3cret@",
            "redis://host/db1",
            "rediss://host",
            "http://s3cret@host",
            "redis+unix://relative",
        ] {
            let e = ReplayStoreLocation::parse(bad).unwrap_err();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("redis://"), "{e}");
        }
    }
}

//! Leaf config types that have syntax: durations, byte sizes, strings with `${ENV}`
//! substitution. Each parses in its `Deserialize`, so a bad value is reported by serde with its
//! line, column and field path.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Replace `${VAR}` and `${VAR:-default}` with the environment's value. `$$` is a literal `$`.
///
/// Inside [`read_only`], an unset variable becomes [`UNSET_PREFIX`] and its name instead of an
/// error: commands that only read the store need no secret they never use.
pub fn substitute_env(input: &str) -> Result<String, String> {
    substitute_with(input, |name| match std::env::var(name) {
        Ok(v) => Some(v),
        Err(_) if READ_ONLY.with(std::cell::Cell::get) => Some(format!("{UNSET_PREFIX}{name}")),
        Err(_) => None,
    })
}

/// How an unset `${NAME}` reads inside [`read_only`]: this prefix and the name (long enough
/// for every key-length check, never a valid key, URL or address).
pub const UNSET_PREFIX: &str = "authtrail-unset-env:";

/// The variable a value stands in for, when it is an unset one read by [`read_only`].
pub fn unset_name(value: &str) -> Option<&str> {
    let i = value.find(UNSET_PREFIX)?;
    let rest = &value[i + UNSET_PREFIX.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

thread_local! {
    static READ_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` (a config load) with unset variables read as stand-ins ([`UNSET_PREFIX`]).
pub fn read_only<T>(f: impl FnOnce() -> T) -> T {
    READ_ONLY.with(|r| r.set(true));
    let out = f();
    READ_ONLY.with(|r| r.set(false));
    out
}

/// Whether a [`read_only`] load is running.
pub fn is_read_only() -> bool {
    READ_ONLY.with(std::cell::Cell::get)
}

/// [`substitute_env`] with an injectable lookup (for tests).
pub fn substitute_with(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed \"${{\" in \"{input}\""))?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!("invalid environment variable name \"{name}\""));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable \"{name}\" is not set"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A config string after `${ENV}` substitution.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text(pub String);

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Deserialize a scalar as a string (numbers and booleans are taken as written) and substitute
/// `${ENV}` in it.
fn env_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            substitute_env(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        env_scalar(d).map(Text)
    }
}

/// A secret scalar whose `${ENV}` substitution may fail without failing the parse: the failure
/// is kept for validation to report, or to pass over where the secret is not used (`verify`
/// needs no checkpoint signing key). `Debug` never shows the value.
#[derive(Clone)]
pub struct DeferredText(pub Result<String, String>);

impl fmt::Debug for DeferredText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeferredText(..)")
    }
}

impl<'de> Deserialize<'de> for DeferredText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DeferredText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DeferredText, E> {
                Ok(DeferredText(substitute_env(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DeferredText, E> {
                Ok(DeferredText(Ok(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DeferredText, E> {
                Ok(DeferredText(Ok(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written with a unit: `250ms`, `10s`, `5m`, `2h`, `400d` ([`crate::units`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duration(pub StdDuration);

impl Duration {
    pub fn parse(s: &str) -> Result<Duration, String> {
        crate::units::parse_duration(s).map(Duration)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = env_scalar(d)?;
        Duration::parse(&s).map_err(de::Error::custom)
    }
}

/// A size in bytes: a plain number, or with a unit `B`, `KiB`, `MiB`, `GiB` (also `KB`, `MB`,
/// `GB` for powers of 1000; [`crate::units`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        crate::units::parse_size(s).map(ByteSize)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = env_scalar(d)?;
        ByteSize::parse(&s).map_err(de::Error::custom)
    }
}

/// One value or a list of them: `method: POST` or `method: [GET, HEAD]`.
#[derive(Clone, Debug, PartialEq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(OneOrMany(out))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|v| OneOrMany(vec![v]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::<E>::new(v)).map(|v| OneOrMany(vec![v]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(de::value::U64Deserializer::<E>::new(v)).map(|v| OneOrMany(vec![v]))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_string())
    }

    #[test]
    fn substitution_forms() {
        assert_eq!(substitute_with("a ${SET} b", env).unwrap(), "a value b");
        assert_eq!(substitute_with("${UNSET:-dflt}", env).unwrap(), "dflt");
        assert_eq!(substitute_with("$$HOME $x", env).unwrap(), "$HOME $x");
        assert_eq!(
            substitute_with("${UNSET}", env).unwrap_err(),
            "environment variable \"UNSET\" is not set"
        );
        assert_eq!(
            substitute_with("${OPEN", env).unwrap_err(),
            "unclosed \"${\" in \"${OPEN\""
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            Duration::parse("250ms").unwrap().0,
            StdDuration::from_millis(250)
        );
        assert_eq!(
            Duration::parse("5m").unwrap().0,
            StdDuration::from_secs(300)
        );
        assert_eq!(
            Duration::parse("400d").unwrap().0,
            StdDuration::from_secs(400 * 86_400)
        );
        assert!(Duration::parse("10").is_err());
        assert!(Duration::parse("10y").is_err());
        assert_eq!(ByteSize::parse("64KiB").unwrap().0, 65_536);
        assert_eq!(ByteSize::parse("1024").unwrap().0, 1_024);
        assert!(ByteSize::parse("1 parsec").is_err());
    }
}

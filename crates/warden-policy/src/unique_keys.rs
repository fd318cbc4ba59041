//! JSON whose objects name each key once. serde_json keeps the last of a
//! repeated key, and other parsers keep the first: an agent's arguments
//! that read one way to a policy and another way to its tool, or an event
//! that silently loses a field, are refused instead, naming the key.

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value with no repeated key in any of its objects.
pub struct UniqueKeys(pub Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(ValueVisitor { noting: None })
            .map(UniqueKeys)
    }
}

/// For an optional field: `#[serde(default, deserialize_with = "unique_keys")]`.
pub fn unique_keys<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Value>, D::Error> {
    Option::<UniqueKeys>::deserialize(de).map(|v| v.map(|UniqueKeys(v)| v))
}

/// For an optional object field that may be `null` (none):
/// `#[serde(default, deserialize_with = "unique_object")]`.
pub fn unique_object<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<Map<String, Value>>, D::Error> {
    match UniqueKeys::deserialize(de)?.0 {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(None),
        _ => Err(D::Error::custom("invalid type: expected a JSON object")),
    }
}

/// For an object field of a change, which may be left out but not `null`.
pub fn unique_object_not_null<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<Map<String, Value>>, D::Error> {
    match unique_object(de)? {
        Some(map) => Ok(Some(map)),
        None => Err(D::Error::custom("may be left out, but not null")),
    }
}

/// A JSON document read whole, with the place of every repeated key
/// (`[1].a.b`, `events[0].msg`), the first value of each kept: for a
/// batch refused for one repeated key, so that every bad item can be named
/// at once rather than the first alone.
pub fn repeated_keys(bytes: &[u8]) -> Result<(Value, Vec<String>), serde_json::Error> {
    let found = std::cell::RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde::de::DeserializeSeed::deserialize(
        ValueVisitor {
            noting: Some((String::new(), &found)),
        },
        &mut de,
    )?;
    de.end()?;
    Ok((value, found.into_inner()))
}

/// Reads any JSON value. A repeated key is an error, unless `noting`
/// holds the value's place and a list to note each repeated key's place
/// in (the first value is then kept).
struct ValueVisitor<'a> {
    noting: Option<(String, &'a std::cell::RefCell<Vec<String>>)>,
}

impl ValueVisitor<'_> {
    /// The reader of a value inside this one, at the place `step` names.
    fn inner(&self, step: impl FnOnce(&str) -> String) -> Self {
        ValueVisitor {
            noting: self
                .noting
                .as_ref()
                .map(|(path, found)| (step(path), *found)),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) =
            seq.next_element_seed(self.inner(|path| format!("{path}[{}]", items.len())))?
        {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let inner = self.inner(|path| match path {
                "" => key.clone(),
                _ => format!("{path}.{key}"),
            });
            let place = inner.noting.as_ref().map(|(path, _)| path.clone());
            let value = access.next_value_seed(inner)?;
            match map.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(taken) => match (&self.noting, place) {
                    (Some((_, found)), Some(place)) => found.borrow_mut().push(place),
                    _ => {
                        return Err(A::Error::custom(format!(
                            "duplicate field `{}`",
                            taken.key()
                        )))
                    }
                },
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_all_placed_and_the_first_value_kept() {
        let (value, found) = repeated_keys(
            br#"[{"a": 1, "a": 2}, {"b": {"c": 1, "c": 2}}, {"d": [{"e": 1, "e": 1}]}]"#,
        )
        .unwrap();
        assert_eq!(found, vec!["[0].a", "[1].b.c", "[2].d[0].e"]);
        assert_eq!(value[0]["a"], 1);
        let (_, found) = repeated_keys(br#"{"events": [{"m": 1}, {"m": 1, "m": 2}]}"#).unwrap();
        assert_eq!(found, vec!["events[1].m"]);
        let (_, found) = repeated_keys(br#"{"a": 1}"#).unwrap();
        assert!(found.is_empty());
        assert!(repeated_keys(br#"{"a": 1"#).is_err());
    }

    #[test]
    fn a_repeated_key_at_any_depth_is_refused() {
        let ok: UniqueKeys = serde_json::from_str(r#"{"a": [1, {"b": 2.5}], "c": null}"#).unwrap();
        assert_eq!(ok.0, serde_json::json!({"a": [1, {"b": 2.5}], "c": null}));
        for text in [
            r#"{"a": 1, "a": 2}"#,
            r#"[{"f": {"x": 1, "x": 1}}]"#,
            r#"{"a": {"b": [{"c": 1, "c": 2}]}}"#,
        ] {
            let e = serde_json::from_str::<UniqueKeys>(text).err().expect(text);
            assert!(e.to_string().starts_with("duplicate field `"), "{e}");
        }
        let big: UniqueKeys = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(big.0, serde_json::json!(u64::MAX));
    }
}

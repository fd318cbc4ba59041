//! `fields` is any JSON; search sees it as dotted names (`geo.country`)
//! with scalar values, the way Elasticsearch flattens objects.

use serde_json::{Map, Value};

use super::limits::{MAX_FIELDS, MAX_FIELD_DEPTH, MAX_FIELD_NAME_CHARS};

/// Calls `visit` with every scalar (string, number, boolean) under its
/// dotted path; an array's items share their array's path, and nulls are
/// absent.
pub fn visit_scalars(fields: &Map<String, Value>, visit: &mut impl FnMut(&str, &Value)) {
    let mut path = String::new();
    for (key, value) in fields {
        walk(&mut path, key, value, visit);
    }
}

fn walk(path: &mut String, key: &str, value: &Value, visit: &mut impl FnMut(&str, &Value)) {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
    walk_item(path, value, visit);
    path.truncate(len);
}

/// A value at `path`: objects add names, arrays keep the path.
fn walk_item(path: &mut String, value: &Value, visit: &mut impl FnMut(&str, &Value)) {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map {
                walk(path, k, v, visit);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk_item(path, item, visit);
            }
        }
        scalar => visit(path, scalar),
    }
}

/// Checks the limits that bound an event's indexing cost; the error names
/// the offending path.
pub fn check(fields: &Map<String, Value>) -> Result<(), (String, String)> {
    let mut count = 0usize;
    for (key, value) in fields {
        check_value(key, value, 1, &mut count)?;
    }
    Ok(())
}

fn check_value(
    path: &str,
    value: &Value,
    depth: usize,
    count: &mut usize,
) -> Result<(), (String, String)> {
    if depth > MAX_FIELD_DEPTH {
        return Err((
            path.to_string(),
            format!("nests deeper than {MAX_FIELD_DEPTH} levels"),
        ));
    }
    // `.a` and `a..b` could never be named in a query.
    if path.split('.').any(str::is_empty) {
        return Err((
            path.to_string(),
            "field names must not be empty, nor begin, end or hold an empty part between dots"
                .into(),
        ));
    }
    let length = path.chars().count();
    if length > MAX_FIELD_NAME_CHARS {
        // Named by its start: the whole name could read as a secret (a
        // long run of letters) and be taken out of the error.
        let shown: String = path.chars().take(24).collect();
        return Err((
            format!("{shown}…"),
            format!(
                "field names are at most {MAX_FIELD_NAME_CHARS} characters; this one \
                 (beginning `{shown}`) has {length}"
            ),
        ));
    }
    // A name with a control or invisible character would look like
    // another name wherever it is shown, and could not be typed in a query.
    if let Some(c) = path
        .chars()
        .find(|c| c.is_control() || warden_policy::pattern::invisible(*c))
    {
        return Err((
            path.to_string(),
            format!(
                "field names must not contain control, invisible or direction-changing characters (U+{:04X})",
                c as u32
            ),
        ));
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                check_value(&format!("{path}.{k}"), v, depth + 1, count)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        check_value(path, item, depth + 1, count)?
                    }
                    _ => bump(path, count)?,
                }
            }
        }
        _ => bump(path, count)?,
    }
    Ok(())
}

fn bump(path: &str, count: &mut usize) -> Result<(), (String, String)> {
    *count += 1;
    if *count > MAX_FIELDS {
        return Err((
            path.to_string(),
            format!("an event holds at most {MAX_FIELDS} field values"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_become_dotted_names_and_arrays_share_theirs() {
        let fields =
            json!({"geo": {"country": "FR", "city": null}, "ports": [22, 443], "ok": true});
        let mut seen = Vec::new();
        visit_scalars(fields.as_object().unwrap(), &mut |p, v| {
            seen.push((p.to_string(), v.clone()))
        });
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            seen,
            vec![
                ("geo.country".into(), json!("FR")),
                ("ok".into(), json!(true)),
                ("ports".into(), json!(22)),
                ("ports".into(), json!(443)),
            ]
        );
    }

    #[test]
    fn limits_name_the_path() {
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!({ "a": deep });
        }
        let (path, _) = check(deep.as_object().unwrap()).unwrap_err();
        assert!(path.starts_with("a.a.a"));
        let (path, _) = check(json!({"x": {"": 1}}).as_object().unwrap()).unwrap_err();
        assert_eq!(path, "x.");
    }
}

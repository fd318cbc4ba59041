//! An event as an index document.

use serde_json::Value;
use tantivy::TantivyDocument;
use warden_core::event::flatten::visit_scalars;
use warden_core::event::Event;

use crate::schema::{field_name, is_number_text, kv_term, num_term, tenant_term, Fields, NumKey};

/// Builds the document for `event`, logged at `seq` for a tenant; `json` is
/// the event's stored text.
pub fn document(
    fields: &Fields,
    seq: u64,
    org_id: &str,
    environment: &str,
    event: &Event,
    json: &str,
) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_u64(fields.seq, seq);
    doc.add_text(fields.tenant, tenant_term(org_id, environment));
    doc.add_text(fields.org, org_id);
    doc.add_i64(fields.timestamp, event.timestamp);
    doc.add_i64(fields.received_at, event.received_at);
    doc.add_u64(fields.severity, event.severity.rank());
    doc.add_bytes(fields.source, json.as_bytes());

    let mut keyword = |name: &str, value: &str| {
        doc.add_text(fields.kv, kv_term(name, value));
    };
    keyword("id", &event.id);
    keyword("source", event.source.as_str());
    keyword("severity", event.severity.as_str());
    let mut present: Vec<String> = Vec::new();
    for (name, value) in [
        ("host", &event.host),
        ("program", &event.program),
        ("agent_id", &event.agent_id),
        ("session_id", &event.session_id),
    ] {
        if let Some(value) = value {
            keyword(name, value);
            present.push(name.into());
        }
    }
    for tag in &event.tags {
        keyword("tags", tag);
    }
    if !event.tags.is_empty() {
        present.push("tags".into());
    }
    if !event.message.is_empty() {
        doc.add_text(fields.message, &event.message);
        present.push("message".into());
    }

    visit_scalars(&event.fields, &mut |path, value| {
        let name = field_name(path);
        match value {
            Value::String(text) => {
                doc.add_text(fields.kv, kv_term(&name, text));
                if is_number_text(text) {
                    if let Some(key) = NumKey::parse(text) {
                        doc.add_bytes(fields.num, &num_term(&name, key));
                    }
                }
            }
            Value::Number(n) => {
                doc.add_text(fields.kv, kv_term(&name, &n.to_string()));
                if let Some(key) = NumKey::of_json(n) {
                    doc.add_bytes(fields.num, &num_term(&name, key));
                }
            }
            Value::Bool(b) => {
                doc.add_text(fields.kv, kv_term(&name, if *b { "true" } else { "false" }))
            }
            _ => {}
        }
        // The name and each of its parents exist (`geo` for `geo.country`).
        let mut end = name.len();
        loop {
            let prefix = &name[..end];
            present.push(prefix.to_string());
            match prefix.rfind('.') {
                Some(dot) => end = dot,
                None => break,
            }
        }
    });
    if !event.fields.is_empty() {
        present.push("fields".into());
    }
    present.sort_unstable();
    present.dedup();
    for name in present {
        doc.add_text(fields.exists, name);
    }
    doc
}

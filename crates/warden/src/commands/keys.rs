//! `warden keys list|create|revoke|rotate`: key management for operators at the
//! host's console, who hold the database and so every organization's keys.

use warden_core::api_key::{authorize_grant, ApiKey, Grantor, KeyRequest};
use warden_core::page::PageRequest;
use warden_core::scope::ScopeSet;
use warden_core::secret::{key_prefix, mint_key};
use warden_core::time::{now_ms, parse_rfc3339, to_rfc3339};
use warden_core::Tenant;
use warden_server::governance::audit_log::{append_alone, AppendError};
use warden_server::services::api_keys::{key_record, rotation, MAX_GRACE_SECS};
use warden_server::services::secrets;
use warden_store::Companion;

/// The actor of changes made at the host's console, in audit records.
const OPERATOR: &str = "cli";

use crate::cli::{KeysCreateArgs, KeysListArgs, KeysRevokeArgs, KeysRotateArgs};

fn describe(k: &ApiKey) -> serde_json::Value {
    serde_json::json!({
        "id": k.id,
        "name": k.name,
        "environment": k.environment.as_str(),
        "prefix": key_prefix(k.environment),
        "last_four": k.last_four,
        "scopes": k.scopes.names(),
        "status": k.status(now_ms()).as_str(),
        "agent_id": k.agent_id,
        "allowed_cidrs": k.allowed_cidrs.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "expires_at": k.expires_at.map(to_rfc3339),
        "created_at": to_rfc3339(k.created_at),
        "last_used_at": k.last_used_at.map(to_rfc3339),
        "revoked_at": k.revoked_at.map(to_rfc3339),
        "rotated_at": k.rotated_at.map(to_rfc3339),
        "previous_valid_until": k.previous_secret_until(now_ms()).map(to_rfc3339),
    })
}

pub async fn list(args: KeysListArgs) -> Result<(), String> {
    let opened = crate::store::open(&args.store, crate::store::Opening::Console).await?;
    // An empty list would also be what a mistyped organization gives.
    if opened
        .store
        .get_organization(&args.org)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        opened.store.close().await;
        return Err(format!("no organization `{}`", args.org));
    }
    let tenant = Tenant {
        org_id: args.org.clone(),
        environment: super::environment(args.environment),
    };
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = PageRequest::new(Some(200), cursor.as_deref(), None, None, &["created_at"])
            .map_err(|e| e.to_string())?;
        let found = opened
            .store
            .list_api_keys(&tenant, None, &page)
            .await
            .map_err(|e| e.to_string())?;
        keys.extend(found.items);
        match found.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    opened.store.close().await;
    let text = if args.json {
        format!(
            "{}\n",
            serde_json::Value::Array(keys.iter().map(describe).collect())
        )
    } else {
        keys.iter().map(|k| text_line(k) + "\n").collect()
    };
    super::say(&text, "")
}

/// One key on one line: what it may do, and every limit on it.
fn text_line(k: &ApiKey) -> String {
    let mut line = format!(
        "{}  {}…{}  {:<8} {}  [{}]",
        k.id,
        key_prefix(k.environment),
        k.last_four,
        k.status(now_ms()).as_str(),
        k.name,
        k.scopes.names().join(",")
    );
    if let Some(agent) = &k.agent_id {
        line.push_str(&format!("  agent {agent}"));
    }
    if !k.allowed_cidrs.is_empty() {
        let ranges: Vec<String> = k.allowed_cidrs.iter().map(|n| n.to_string()).collect();
        line.push_str(&format!("  from {}", ranges.join(",")));
    }
    if let Some(at) = k.expires_at {
        line.push_str(&format!("  expires {}", to_rfc3339(at)));
    }
    if let Some(until) = k.previous_secret_until(now_ms()) {
        line.push_str(&format!("  previous secret until {}", to_rfc3339(until)));
    }
    line
}

pub async fn create(args: KeysCreateArgs) -> Result<(), String> {
    let opened = crate::store::open(&args.store, crate::store::Opening::Console).await?;
    let store = opened.store.as_ref();
    secrets::verify_master_key(store, &opened.master).await?;
    if store
        .get_organization(&args.org)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Err(format!("no organization `{}`", args.org));
    }
    let environment = super::environment(args.environment);
    let expires_at = match &args.expires_at {
        Some(text) => Some(parse_rfc3339(text).ok_or("--expires-at must be an RFC 3339 time")?),
        None => None,
    };
    let operator = Grantor {
        environment,
        scopes: ScopeSet::admin(),
        agent_id: None,
        expires_at: None,
        allowed_cidrs: vec![],
    };
    let request = KeyRequest {
        name: args.name,
        scopes: args.scopes,
        environment: Some(environment),
        expires_at,
        allowed_cidrs: (!args.allowed_cidrs.is_empty()).then_some(args.allowed_cidrs),
        agent_id: args.agent_id,
    };
    let now = now_ms();
    let mut grant = authorize_grant(&operator, request, now).map_err(|e| e.to_string())?;
    let tenant = Tenant {
        org_id: args.org.clone(),
        environment,
    };
    if let Some(reference) = &grant.agent_id {
        // The Warden id or the external id; the key is bound to the id.
        let found = store
            .find_agent(&tenant, reference)
            .await
            .map_err(|e| e.to_string())?;
        let Some(agent) = found else {
            return Err(format!(
                "no agent `{reference}` in the {environment} environment"
            ));
        };
        grant.agent_id = Some(agent.id);
    }
    let secret = mint_key(environment, &opened.master.key_pepper());
    let key = ApiKey::issue(&args.org, grant, &secret, now);
    let record = key_record(OPERATOR, &key, "created", serde_json::json!({}));
    let inserted = append_alone(
        store,
        &tenant,
        &record,
        Some(Companion::InsertApiKey(key.clone())),
        &opened.master.chain_sealer(),
    )
    .await
    .map_err(|e| e.to_string());
    store.close().await;
    inserted?;
    let text = if args.json {
        let mut out = describe(&key);
        out["key"] = serde_json::Value::String(secret.plaintext);
        format!("{out}\n")
    } else {
        format!(
            "Created key {} ({})\n  {}\nThis secret is shown once. Store it now.\n",
            key.id, key.name, secret.plaintext
        )
    };
    super::show_once(
        &text,
        &format!("key {} was created, but its secret", key.id),
        &format!(
            "revoke it (`warden keys revoke {}{}`) and create another",
            key.id,
            crate::store::flags(&args.store)
        ),
    )
}

pub async fn revoke(args: KeysRevokeArgs) -> Result<(), String> {
    let opened = crate::store::open(&args.store, crate::store::Opening::Console).await?;
    let store = opened.store.as_ref();
    let result = async {
        let key = store
            .find_api_key(&args.key_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no key `{}`", args.key_id))?;
        let tenant = Tenant {
            org_id: key.org_id.clone(),
            environment: key.environment,
        };
        let already = || format!("key `{}` is already revoked", key.id);
        if key.revoked_at.is_some() {
            return Err(already());
        }
        let record = key_record(OPERATOR, &key, "revoked", serde_json::json!({}));
        let companion = Companion::RevokeApiKey {
            id: key.id.clone(),
            at: record.at,
        };
        // The record is sealed with the master key: another key's seal
        // would be a break.
        secrets::verify_master_key(store, &opened.master).await?;
        match append_alone(
            store,
            &tenant,
            &record,
            Some(companion),
            &opened.master.chain_sealer(),
        )
        .await
        {
            Ok(_) => Ok(key),
            Err(AppendError::Precondition) => Err(already()),
            Err(e) => Err(e.to_string()),
        }
    }
    .await;
    store.close().await;
    let key = result?;
    let text = if args.json {
        let doc = serde_json::json!({ "id": key.id, "name": key.name, "revoked": true });
        format!("{doc}\n")
    } else {
        format!(
            "Revoked key {} ({}); running servers refuse it within one second.\n",
            key.id, key.name
        )
    };
    super::say(
        &text,
        &format!("key {} was revoked, but its confirmation", key.id),
    )
}

/// As the API's rotation: a new secret, the old one valid for the grace
/// period, a `key_change` record by `cli`.
pub async fn rotate(args: KeysRotateArgs) -> Result<(), String> {
    if args.grace_period_seconds > MAX_GRACE_SECS {
        return Err(format!(
            "--grace-period-seconds must be at most {MAX_GRACE_SECS}"
        ));
    }
    let opened = crate::store::open(&args.store, crate::store::Opening::Console).await?;
    let store = opened.store.as_ref();
    let result = async {
        secrets::verify_master_key(store, &opened.master).await?;
        let key = store
            .find_api_key(&args.key_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no key `{}`", args.key_id))?;
        let revoked = || format!("key `{}` is revoked and cannot be rotated", key.id);
        if key.revoked_at.is_some() {
            return Err(revoked());
        }
        if let Some(expired) = key.expires_at.filter(|at| *at <= now_ms()) {
            return Err(format!(
                "key `{}` expired at {} and cannot be rotated (a new secret would never \
                 work); create another",
                key.id,
                to_rfc3339(expired)
            ));
        }
        let tenant = Tenant {
            org_id: key.org_id.clone(),
            environment: key.environment,
        };
        let secret = mint_key(key.environment, &opened.master.key_pepper());
        let grace = args.grace_period_seconds;
        let (record, rotation) = rotation(OPERATOR, &key, &secret, grace, now_ms());
        let previous_valid_until = rotation.previous_valid_until;
        match append_alone(
            store,
            &tenant,
            &record,
            Some(Companion::RotateApiKey(rotation)),
            &opened.master.chain_sealer(),
        )
        .await
        {
            Ok(_) => {}
            Err(AppendError::Precondition) => {
                return Err(format!(
                    "key `{}` was revoked or rotated meanwhile; nothing was changed",
                    key.id
                ))
            }
            Err(e) => return Err(e.to_string()),
        }
        let rotated = store
            .find_api_key(&key.id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no key `{}`", key.id))?;
        Ok((rotated, secret.plaintext, previous_valid_until))
    }
    .await;
    store.close().await;
    let (key, secret, previous_valid_until) = result?;
    let text = if args.json {
        let mut out = describe(&key);
        out["key"] = serde_json::Value::String(secret);
        out["previous_valid_until"] = serde_json::json!(previous_valid_until.map(to_rfc3339));
        format!("{out}\n")
    } else {
        let previous = match previous_valid_until {
            Some(until) => format!("The previous secret works until {}.", to_rfc3339(until)),
            None => "Running servers refuse the previous secret within one second.".into(),
        };
        format!(
            "Rotated key {} ({})\n  {secret}\nThis secret is shown once. Store it now.\n\
             {previous}\n",
            key.id, key.name
        )
    };
    let previous = match previous_valid_until {
        Some(until) => format!(
            "the previous secret still works until {}, and rotating again would end it at once: \
             create another key for the clients, then revoke this one",
            to_rfc3339(until)
        ),
        None => "rotate it again (the previous secret no longer works)".into(),
    };
    super::show_once(
        &text,
        &format!("key {} was rotated, but its new secret", key.id),
        &previous,
    )
}

//! The OpenAPI 3.1 document: generated from the route annotations, then
//! given the conventions every route shares (error responses, the
//! `Idempotency-Key` header, bearer authentication).

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi, Ref, Required, ResponseBuilder, Type,
};

use crate::http::error::{ErrorCode, ErrorDetail, ErrorEnvelope, Position};
use crate::routes::agents::{AgentSort, AgentStatusName};
use crate::routes::audit::AuditKindName;
use crate::routes::enforce::HoldStatusName;
use crate::routes::policies::{DecisionName, PolicySort};
use crate::routes::wire::{EnvironmentName, SortDirection};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Warden API",
        description = "Warden, the self-hosted security control plane for AI agents.\n\n\
            Authenticate with `Authorization: Bearer <key>` (a `wdn_live_…` or `wdn_test_…` key, \
            or a token from `POST /api/v1/auth/token`). Successes are `{\"data\", \"meta\"}`; \
            lists add `next_cursor`; errors are `{\"error\": {code, message, field?, position?, request_id}}`. \
            Every authenticated response carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and \
            `X-RateLimit-Reset`; every response carries `X-Request-Id`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(
        ErrorEnvelope, ErrorDetail, ErrorCode, Position, SortDirection, AgentSort, AgentStatusName, EnvironmentName,
        PolicySort, DecisionName, HoldStatusName, AuditKindName
    )),
    tags(
        (name = "agents", description = "The registry of AI agents"),
        (name = "api-keys", description = "Scoped API keys"),
        (name = "auth", description = "Token exchange"),
        (name = "operations", description = "Health, readiness and metrics")
    )
)]
pub struct ApiDoc;

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .build(),
        )
        .build()
}

fn idempotency_header() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Retrying with the same key and body returns the first response; another body gives 409.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                // Visible ASCII, spaces allowed inside.
                .pattern(Some("^[ -~]*[!-~][ -~]*$")),
        ))
        .build()
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("post", item.post.as_mut()),
        ("put", item.put.as_mut()),
        ("patch", item.patch.as_mut()),
        ("delete", item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// Adds what every route shares, so that the document lists each status a
/// route can answer.
pub fn apply_conventions(document: &mut OpenApi) {
    // The server that serves the document: a generated client's base URL
    // is where it read the document from.
    document.servers = Some(vec![utoipa::openapi::server::ServerBuilder::new()
        .url("/")
        .description(Some("The Warden server serving this document"))
        .build()]);
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-Api-Key",
            "The same key or token as in `Authorization: Bearer`, as vendor SDKs send it",
        ))),
    );
    restrict_scopes(components);
    // A registration may send `null` for no tags; a change may leave
    // them out, but `null` is refused (it would read as "clear").
    for (schema, nullable) in [("CreateAgent", true), ("UpdateAgent", false)] {
        restrict_tags(components, schema, nullable);
    }
    for (path, item) in document.paths.paths.iter_mut() {
        // `/v1/…` is the Thoth SDK's wire format: authenticated alike.
        let api = path.starts_with("/api/v1/") || path.starts_with("/v1/");
        let authenticated = api && path != "/api/v1/auth/token";
        for (method, op) in operations(item) {
            if authenticated {
                also_by_api_key_header(op);
            }
            let mut add = |status: &str, description: &str| {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(description).into());
            };
            // Every route refuses a query parameter it does not take.
            add(
                "400",
                "Bad input: `field` names the field or parameter, `position` a parse error",
            );
            add(
                "501",
                "A transfer coding other than `chunked` (`Transfer-Encoding: gzip, chunked`)",
            );
            if api {
                add("500", "Internal error; the request id finds it in the log");
                add("503", "The store is unavailable");
            }
            if authenticated {
                add("401", "Missing, invalid, expired or revoked credentials");
                add("403", "The credential lacks the scope (named in the message) or may not be used from this address");
                add("429", "Rate limit exceeded; see Retry-After");
            }
            let has_body = op.request_body.is_some();
            if has_body {
                add("413", "The body is larger than 1 MiB");
                add("415", "The body is not application/json, or is declared in a charset other than UTF-8");
            }
            let replayable = !crate::idempotency::ANSWERED_AFRESH.contains(&path.as_str());
            let replays = method == "post" && authenticated && replayable;
            if replays {
                add(
                    "409",
                    "The Idempotency-Key was used with another body, or is in use",
                );
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(idempotency_header());
            }
            // The token exchange takes from the key's bucket once the key
            // is known, and says so in the same headers.
            let limited = authenticated || path == "/api/v1/auth/token";
            declare_response_headers(op, limited, replays);
        }
    }
}

/// The headers answers carry (`docs/api-conventions.md`), declared so that
/// generated clients can read them; none is declared required, since an
/// answer made before a step (a request refused before authentication
/// carries no limit headers) leaves it out.
fn declare_response_headers(op: &mut Operation, authenticated: bool, replays: bool) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::RefOr;
    let header = |kind: Type, description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(kind))
            .description(Some(description))
            .build()
    };
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let mut declare = |name: &str, kind: Type, description: &str| {
            response
                .headers
                .entry(name.to_string())
                .or_insert_with(|| header(kind, description));
        };
        declare(
            "X-Request-Id",
            Type::String,
            "The request's id, as in the body's `meta.request_id` or `error.request_id`",
        );
        if authenticated && status != "401" {
            declare(
                "X-RateLimit-Limit",
                Type::Integer,
                "Requests a minute the organization's plan allows",
            );
            declare(
                "X-RateLimit-Remaining",
                Type::Integer,
                "Requests that could be made right now",
            );
            declare(
                "X-RateLimit-Reset",
                Type::Integer,
                "Unix seconds at which the organization's bucket is full again",
            );
        }
        if status == "429" {
            declare(
                "Retry-After-Ms",
                Type::Integer,
                "Milliseconds to wait before retrying (Retry-After rounded up to whole seconds)",
            );
        }
        match status.as_str() {
            "429" | "503" => declare(
                "Retry-After",
                Type::Integer,
                "Seconds to wait before retrying",
            ),
            "409" if replays => declare(
                "Retry-After",
                Type::Integer,
                "Seconds to wait before retrying: sent only while another request with the same Idempotency-Key runs",
            ),
            "401" => declare(
                "WWW-Authenticate",
                Type::String,
                "`Bearer realm=\"warden\"`",
            ),
            ok if replays && ok.starts_with('2') => declare(
                "Idempotent-Replayed",
                Type::String,
                "`true` when the answer is the stored one of an earlier request with this Idempotency-Key",
            ),
            _ => {}
        }
    }
}

/// Each bearer requirement again under the `X-Api-Key` header, which every
/// authenticated route reads too.
fn also_by_api_key_header(op: &mut Operation) {
    let Some(requirements) = op.security.as_mut() else {
        return;
    };
    let by_header: Vec<SecurityRequirement> = requirements
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter_map(|v| {
            let scopes: Vec<String> = v
                .get("bearer")?
                .as_array()?
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            Some(SecurityRequirement::new("api_key", scopes))
        })
        .collect();
    requirements.extend(by_header);
}

/// The scope catalogue is data, not a Rust enum: list it in the schema of
/// key creation so that clients (and fuzzers) see the allowed values.
fn restrict_scopes(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, Schema};
    use utoipa::openapi::RefOr;
    let Some(RefOr::T(Schema::Object(create))) = components.schemas.get_mut("CreateApiKey") else {
        return;
    };
    let scope = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(warden_core::scope::Scope::catalogue()));
    let scopes = ArrayBuilder::new()
        .items(ArrayItems::RefOrSchema(Box::new(scope.into())))
        .min_items(Some(1))
        .description(create.properties.get("scopes").and_then(|s| match s {
            RefOr::T(Schema::Array(a)) => a.description.clone(),
            _ => None,
        }));
    create.properties.insert("scopes".into(), scopes.into());
}

/// Tags are 1 to 64 characters, not only blanks, without control
/// characters; utoipa cannot put that on the items of a `Vec<String>`.
fn restrict_tags(components: &mut utoipa::openapi::Components, schema: &str, nullable: bool) {
    use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, Schema};
    use utoipa::openapi::RefOr;
    let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
        return;
    };
    let tag = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(Some(
            r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        ));
    let tags = ArrayBuilder::new()
        .schema_type(if nullable {
            utoipa::openapi::schema::SchemaType::from_iter([Type::Array, Type::Null])
        } else {
            utoipa::openapi::schema::SchemaType::new(Type::Array)
        })
        .items(ArrayItems::RefOrSchema(Box::new(tag.into())))
        .max_items(Some(50))
        .description(Some(
            "Up to 50 tags of 1 to 64 characters; stored lower-case.",
        ));
    object.properties.insert("tags".into(), tags.into());
}

/// A path under `/docs` that names no page of the API reference: the
/// standard error envelope, as for any other unknown path, rather than the
/// reference's own empty answer.
pub async fn page_not_found(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    if response.status() == axum::http::StatusCode::NOT_FOUND {
        return axum::response::IntoResponse::into_response(
            crate::http::error::ApiError::not_found("page"),
        );
    }
    response
}

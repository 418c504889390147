//! The API's OpenAPI document, generated from the handlers' annotations,
//! so it cannot drift from the routes.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use std::sync::OnceLock;

use serde_json::{json, Value};

use super::messages::MAX_BROADCAST_ROOMS;
use super::users::MAX_REFUSE_SECONDS;
use super::{messages, rooms, users, MAX_IDEMPOTENCY_KEY_BYTES};
use crate::chat::names::{MAX_ROOM_NAME, MAX_USER_NAME};
use crate::protocol::{visible_text_pattern, MAX_HISTORY_LIMIT, MAX_TEXT_CHARS};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rookery server API",
        description = "What a backend does over HTTP: publish (stored, with a `seq`, \
                       on every replica), inspect and disconnect. Authenticate with \
                       `Authorization: Bearer KEY`, a key from `API_KEYS`."
    ),
    paths(
        messages::publish,
        messages::direct,
        messages::broadcast,
        rooms::presence,
        rooms::history,
        users::connections,
        users::disconnect,
    ),
    modifiers(&BearerKey),
    tags(
        (name = "messages", description = "Posting as a backend"),
        (name = "rooms", description = "Presence and history"),
        (name = "users", description = "Connections across the cluster"),
    )
)]
pub struct Document;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "api_key",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// `GET /api/v1/openapi.json`: served without a key (it holds none), but
/// only where the API is on.
pub async fn document() -> HttpResponse {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    HttpResponse::Ok().json(DOCUMENT.get_or_init(|| {
        let mut document =
            serde_json::to_value(Document::openapi()).expect("the document serializes");
        constrain(&mut document);
        document
    }))
}

/// Every rule the handlers enforce that the annotations cannot say,
/// written into the document from the constants the handlers check with:
/// a request the document calls valid is one the API accepts (an OpenAPI
/// fuzzer checks this against a live replica in `scripts/test.sh`).
fn constrain(document: &mut Value) {
    let name = format!("[A-Za-z0-9_.-]{{1,{MAX_USER_NAME}}}");
    let public = format!("[A-Za-z0-9_.-]{{1,{MAX_ROOM_NAME}}}");
    let user = json!({"type": "string", "pattern": format!("^{name}$")});
    let public_room = json!({"type": "string", "pattern": format!("^{public}$")});
    let any_room = json!({"type": "string", "pattern": format!("^({public}|@{name}:{name})$")});
    let text = json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_TEXT_CHARS,
        "pattern": visible_text_pattern(),
        "description": "1 to 4000 characters, something visible among them",
    });
    let key = json!({
        "type": "string",
        "pattern": format!("^[!-~]{{1,{MAX_IDEMPOTENCY_KEY_BYTES}}}$"),
    });
    let paths = document["paths"].as_object_mut().expect("paths");
    for operations in paths.values_mut() {
        for (method, operation) in operations.as_object_mut().expect("operations").iter_mut() {
            let Some(parameters) = operation["parameters"].as_array_mut() else {
                continue;
            };
            for parameter in parameters {
                let schema = match parameter["name"].as_str() {
                    Some("room") if method == "post" => public_room.clone(),
                    Some("room") => any_room.clone(),
                    Some("user") => user.clone(),
                    Some("Idempotency-Key") => key.clone(),
                    Some("limit") => json!({
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_HISTORY_LIMIT,
                    }),
                    _ => continue,
                };
                merge(&mut parameter["schema"], schema);
            }
        }
    }
    let schemas = &mut document["components"]["schemas"];
    for request in [
        "PublishRequest",
        "BroadcastRequest",
        "DirectRequest",
        "DisconnectRequest",
    ] {
        schemas[request]["additionalProperties"] = json!(false);
    }
    for request in ["PublishRequest", "BroadcastRequest", "DirectRequest"] {
        merge(&mut schemas[request]["properties"]["text"], text.clone());
    }
    merge(
        &mut schemas["DirectRequest"]["properties"]["from"],
        user.clone(),
    );
    for request in ["PublishRequest", "BroadcastRequest"] {
        let properties = &mut schemas[request]["properties"];
        for sender in ["from", "system"] {
            let description = properties[sender]["description"].clone();
            properties[sender] = user.clone();
            if description.is_string() {
                properties[sender]["description"] = description;
            }
        }
        schemas[request]["oneOf"] = json!([
            {"required": ["from"], "not": {"required": ["system"]}},
            {"required": ["system"], "not": {"required": ["from"]}},
        ]);
    }
    merge(
        &mut schemas["BroadcastRequest"]["properties"]["rooms"],
        json!({
            "minItems": 1,
            "maxItems": MAX_BROADCAST_ROOMS,
            "uniqueItems": true,
            "items": public_room,
        }),
    );
    merge(
        &mut schemas["DisconnectRequest"]["properties"]["refuse_seconds"],
        json!({"maximum": MAX_REFUSE_SECONDS}),
    );
}

/// Sets `rules`' fields in `schema`, keeping the others (its description).
fn merge(schema: &mut Value, rules: Value) {
    if !schema.is_object() {
        *schema = json!({});
    }
    let schema = schema.as_object_mut().expect("an object");
    for (field, rule) in rules.as_object().expect("rules are an object") {
        schema.insert(field.clone(), rule.clone());
    }
}

//! The API's OpenAPI document, generated from the handlers' annotations,
//! so it cannot drift from the routes.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{messages, rooms, users};

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
    HttpResponse::Ok().json(Document::openapi())
}

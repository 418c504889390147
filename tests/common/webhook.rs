//! A real HTTP webhook receiver on 127.0.0.1:0: records every JSON body it
//! is sent, in order, and answers with what the test's function decides.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, FromRequest, Handler, HttpResponse, HttpServer, Responder};
use serde_json::Value;

type Reply = dyn Fn(&Value) -> Value + Send + Sync;

/// How a broken receiver answers.
#[derive(Clone, Copy, Debug)]
pub enum Misbehaviour {
    /// Never answers.
    Hangs,
    /// HTTP 500.
    Fails,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with 8 MiB of JSON.
    Huge,
    /// 307 to an address that would say yes.
    Redirects,
}

impl Misbehaviour {
    pub const ALL: [Self; 5] = [
        Self::Hangs,
        Self::Fails,
        Self::Garbage,
        Self::Huge,
        Self::Redirects,
    ];
}

pub struct Webhook {
    pub url: String,
    received: Arc<Mutex<Vec<Value>>>,
    handle: ServerHandle,
}

impl Webhook {
    /// Answers every POST with `reply(body)` as JSON (status 200).
    pub fn start(reply: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let reply: Arc<Reply> = Arc::new(reply);
        let log = received.clone();
        let (url, handle) = serve(move |body: web::Json<Value>| {
            let (log, reply) = (log.clone(), reply.clone());
            async move {
                let answer = reply(&body);
                log.lock().unwrap().push(body.into_inner());
                HttpResponse::Ok().json(answer)
            }
        });
        Self {
            url,
            received,
            handle,
        }
    }

    /// A receiver that answers every POST badly, as `how` says: the URL.
    /// Dropped with the returned handle.
    pub fn misbehaving(how: Misbehaviour) -> (String, ServerHandle) {
        serve(move |request: actix_web::HttpRequest| async move {
            if request.path() == "/yes" {
                return HttpResponse::Ok().json(serde_json::json!({"allowed": true}));
            }
            match how {
                Misbehaviour::Hangs => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    HttpResponse::Ok().finish()
                }
                Misbehaviour::Fails => HttpResponse::InternalServerError().finish(),
                Misbehaviour::Garbage => HttpResponse::Ok()
                    .content_type("application/json")
                    .body("<html>not a decision"),
                Misbehaviour::Huge => {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(format!(
                            r#"{{"allowed":true,"pad":"{}"}}"#,
                            "x".repeat(8 * 1024 * 1024)
                        ))
                }
                Misbehaviour::Redirects => HttpResponse::TemporaryRedirect()
                    .insert_header(("Location", "/yes"))
                    .finish(),
            }
        })
    }

    /// A URL where nothing listens: a webhook that is down.
    pub fn down() -> String {
        format!("http://127.0.0.1:{}/hook", super::free_port())
    }

    /// Every body received so far.
    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` bodies have arrived, returning them all.
    pub async fn wait_for(&self, count: usize, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the webhook got {} of {count} requests: {received:?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// A one-worker HTTP server on 127.0.0.1:0 answering every request with
/// `handler`: its URL (path `/hook`) and its handle.
fn serve<F, Args>(handler: F) -> (String, ServerHandle)
where
    F: Handler<Args> + Send + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = HttpServer::new(move || App::new().default_service(web::to(handler.clone())))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (url, handle)
}

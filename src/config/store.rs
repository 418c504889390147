//! Where the data lives: a MongoDB (a URL, or docker-chat's variables),
//! else the embedded store.

use super::Config;

/// Where the shared MongoDB is: a URL, or docker-chat's separate variables.
#[derive(Debug, Clone)]
pub struct MongoConfig {
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: String,
}

impl Config {
    /// The MongoDB to use, if one is configured; otherwise the embedded store.
    pub fn mongo(&self) -> Option<MongoConfig> {
        let set = |value: &Option<String>| value.clone().filter(|value| !value.trim().is_empty());
        let url = set(&self.mongo_url);
        let host = set(&self.db_host);
        if url.is_none() && host.is_none() {
            return None;
        }
        Some(MongoConfig {
            url,
            host,
            port: self.db_port,
            username: set(&self.mongo_username),
            password: set(&self.mongo_password),
            database: self.mongo_database.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_store_is_the_default() {
        assert!(Config::from_flags(&[]).mongo().is_none());
        assert!(
            Config::from_flags(&["--mongo-url", " "]).mongo().is_none(),
            "blank counts as unset"
        );
    }

    #[test]
    fn docker_chat_variables_select_mongodb() {
        let mongo = Config::from_flags(&[
            "--db-host",
            "db",
            "--db-port",
            "27018",
            "--mongo-database",
            "chat",
        ])
        .mongo()
        .unwrap();
        assert_eq!(
            (
                mongo.url,
                mongo.host.as_deref(),
                mongo.port,
                mongo.database.as_str()
            ),
            (None, Some("db"), 27018, "chat")
        );
    }
}

//! Checking a task request before it reaches the database, so bad input
//! is refused with an error naming the field instead of failing inside a
//! statement (or, worse, being accepted and failing a handler later):
//!
//! - no string anywhere in the request may hold a NUL character, which
//!   PostgreSQL's text and jsonb cannot store;
//! - the context must satisfy the template's `input_schema` (JSON Schema),
//!   when the template declares one.
//!
//! Compiled schemas are cached per template key for the life of the
//! [`Schemas`] (one per client).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sqlx::PgPool;

use super::{OrchestrationError, TaskRequest};
use crate::template::TemplateKey;

/// Problems of the request's own fields, each naming its path.
pub fn check_request(request: &TaskRequest) -> Vec<String> {
    let mut problems = Vec::new();
    let strings = [
        ("namespace", Some(&request.namespace)),
        ("name", Some(&request.name)),
        ("version", Some(&request.version)),
        ("idempotency_key", request.idempotency_key.as_ref()),
        ("initiator", request.initiator.as_ref()),
        ("source_system", request.source_system.as_ref()),
        ("reason", request.reason.as_ref()),
    ];
    for (field, value) in strings {
        if value.is_some_and(|v| v.contains('\0')) {
            problems.push(nul_problem(field));
        }
    }
    find_nul(&request.context, "context", &mut problems);
    find_nul(&request.tags, "tags", &mut problems);
    problems
}

fn nul_problem(path: &str) -> String {
    format!("{path} contains a NUL character (\\u0000), which PostgreSQL cannot store")
}

/// Every task creation walks its context: a child's path is only built
/// when there is something below it to report or to look into.
fn find_nul(value: &Value, path: &str, problems: &mut Vec<String>) {
    let look_into = |item: &Value| match item {
        Value::String(s) => s.contains('\0'),
        Value::Array(_) | Value::Object(_) => true,
        _ => false,
    };
    match value {
        Value::String(s) if s.contains('\0') => problems.push(nul_problem(path)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate().filter(|(_, item)| look_into(item)) {
                find_nul(item, &format!("{path}[{i}]"), problems);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                if key.contains('\0') {
                    problems.push(format!("a key of {path}: {}", nul_problem(key)));
                }
                if look_into(item) {
                    find_nul(item, &format!("{path}.{key}"), problems);
                }
            }
        }
        _ => {}
    }
}

/// Compiled input schemas by template, loaded from the database on first
/// use (`None`: the template declares none).
#[derive(Default)]
pub struct Schemas {
    cache: Mutex<HashMap<TemplateKey, Option<Arc<jsonschema::Validator>>>>,
}

impl Schemas {
    /// Refuses the request if its fields hold what the database cannot
    /// store, or its context fails the template's input schema.
    pub async fn check(
        &self,
        pool: &PgPool,
        request: &TaskRequest,
    ) -> Result<(), OrchestrationError> {
        let mut problems = check_request(request);
        if problems.is_empty() {
            if let Some(validator) = self.validator(pool, request).await? {
                problems.extend(validator.iter_errors(&request.context).map(|e| {
                    let at = e.instance_path().to_string().replace('/', ".");
                    format!("context{at}: {e}")
                }));
            }
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(OrchestrationError::InvalidRequest {
                template: request.template_key().to_string(),
                problems,
            }),
        }
    }

    async fn validator(
        &self,
        pool: &PgPool,
        request: &TaskRequest,
    ) -> Result<Option<Arc<jsonschema::Validator>>, OrchestrationError> {
        let key = request.template_key();
        if let Some(cached) = self.cache.lock().expect("schema cache").get(&key) {
            return Ok(cached.clone());
        }
        let row: Option<(Option<Value>,)> = sqlx::query_as(
            "SELECT nt.template->'input_schema' FROM tasker.named_tasks nt
               JOIN tasker.namespaces ns ON ns.namespace_id = nt.namespace_id
              WHERE ns.name = $1 AND nt.name = $2 AND nt.version = $3",
        )
        .bind(&key.namespace)
        .bind(&key.name)
        .bind(&key.version)
        .fetch_optional(pool)
        .await?;
        let Some((schema,)) = row else {
            return Err(OrchestrationError::UnknownTemplate(key.to_string()));
        };
        // Templates are validated when loaded, so a stored schema compiles;
        // one that does not (written by other means) checks nothing.
        let validator = schema
            .filter(|s| !s.is_null())
            .and_then(|s| jsonschema::validator_for(&s).ok())
            .map(Arc::new);
        self.cache
            .lock()
            .expect("schema cache")
            .insert(key, validator.clone());
        Ok(validator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_characters_are_found_with_their_path() {
        let mut request =
            TaskRequest::new("ns", "name", "1", json!({"a": {"b": ["ok", "x\u{0}y"]}}));
        request.tags = json!({"k\u{0}": 1});
        request.reason = Some("\u{0}".into());
        let problems = check_request(&request);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("reason contains a NUL"));
        assert!(problems[1].starts_with("context.a.b[1] contains a NUL"));
        assert!(problems[2].starts_with("a key of tags"));
    }

    #[test]
    fn a_clean_request_has_no_problems() {
        let request = TaskRequest::new("ns", "name", "1", json!({"even_number": 2, "s": "text"}));
        assert!(check_request(&request).is_empty());
    }
}

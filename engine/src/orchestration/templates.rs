//! Storing task templates in the database, where task creation reads them.

use sqlx::PgPool;
use uuid::Uuid;

use crate::template::TaskTemplate;

/// Register (or update) templates and create their namespaces' queues.
/// Returns the named task ids in the order given.
pub async fn register_templates(
    pool: &PgPool,
    templates: &[TaskTemplate],
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut ids = Vec::with_capacity(templates.len());
    for template in templates {
        let json = serde_json::to_value(template).expect("a template serializes to JSON");
        let id: Uuid = sqlx::query_scalar("SELECT tasker.register_template($1, $2, $3, $4)")
            .bind(&template.namespace_name)
            .bind(&template.name)
            .bind(&template.version)
            .bind(json)
            .fetch_one(pool)
            .await?;
        ids.push(id);
    }
    Ok(ids)
}

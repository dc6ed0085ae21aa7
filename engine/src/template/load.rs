//! Loading templates: parsing YAML text, reading a file, and reading a
//! directory of template files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{TaskTemplate, TemplateError, TemplateKey};

impl TaskTemplate {
    /// Parses and validates a template. `source` (a path or a label) is used
    /// in error messages.
    pub fn from_yaml_str(text: &str, source: &str) -> Result<TaskTemplate, TemplateError> {
        let template: TaskTemplate =
            serde_yaml_ng::from_str(text).map_err(|e| TemplateError::Parse {
                file: source.to_string(),
                message: parse_message(&e),
            })?;
        template.validate(source)?;
        Ok(template)
    }

    /// Reads, parses and validates one template file.
    pub fn load_file(path: &Path) -> Result<TaskTemplate, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        TaskTemplate::from_yaml_str(&text, &path.display().to_string())
    }
}

/// Loads every `*.yaml` / `*.yml` file of `dir` (not recursive), in file name
/// order. Fails on the first file that does not load, and when two files
/// define the same namespace/name@version.
pub fn load_dir(dir: &Path) -> Result<Vec<TaskTemplate>, TemplateError> {
    let io_error = |source| TemplateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();

    let mut seen: HashMap<TemplateKey, PathBuf> = HashMap::new();
    let mut templates = Vec::with_capacity(paths.len());
    for path in paths {
        let template = TaskTemplate::load_file(&path)?;
        let key = template.key();
        if let Some(first) = seen.get(&key) {
            return Err(TemplateError::Duplicate {
                key,
                first: first.display().to_string(),
                second: path.display().to_string(),
            });
        }
        seen.insert(key, path);
        templates.push(template);
    }
    Ok(templates)
}

fn parse_message(e: &serde_yaml_ng::Error) -> String {
    let message = e.to_string();
    match e.location() {
        Some(loc) if !message.contains("line") => {
            format!("{message} at line {} column {}", loc.line(), loc.column())
        }
        _ => message,
    }
}

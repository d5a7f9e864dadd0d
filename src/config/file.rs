//! Reading the TOML file: parsing over the defaults, and errors that name the key and the place.

use std::path::Path;

use super::*;

pub(super) fn read_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_toml(&text, &path.display().to_string())
}

/// Parses TOML over the defaults without validating. serde's errors do not say which key failed,
/// so on failure the document is checked key by key against the serialized defaults: an unknown
/// key, or a value that fails on its own, is reported with its full path.
pub(super) fn parse_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
        ConfigError::Syntax {
            origin: origin.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })?;
    match doc.clone().try_into::<Config>() {
        Ok(config) => Ok(config),
        Err(error) => {
            // Find the key to blame; if no single key fails, report serde's message as is.
            let template = toml::Table::try_from(Config::default())
                .expect("invariant: the default Config serializes to a TOML table");
            check_table(&doc, &template, &mut Vec::new(), origin, &|t| t)?;
            Err(ConfigError::BadValue {
                key: "(document)".to_owned(),
                origin: origin.to_owned(),
                message: error.message().to_owned(),
            })
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// One step of a key path: a table key or an array index.
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

pub(super) fn render_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(key);
                } else {
                    out.push_str(&format!("{key:?}"));
                }
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Checks `doc` (a table at `path`) against `template` (the defaults at the same place).
/// `embed` wraps a table standing at `path` into a whole document, filling everything else from
/// the defaults, so that one value can be tried on its own with the real deserializer.
fn check_table(
    doc: &toml::Table,
    template: &toml::Table,
    path: &mut Vec<Segment>,
    origin: &str,
    embed: &dyn Fn(toml::Table) -> toml::Table,
) -> Result<(), ConfigError> {
    for (key, value) in doc {
        path.push(Segment::Key(key.clone()));
        let Some(expected) = template.get(key) else {
            return Err(ConfigError::UnknownKey {
                key: render_path(path),
                origin: origin.to_owned(),
            });
        };
        // `embed_here` puts a value at `path` (this key) into a whole document.
        let embed_here = |v: toml::Value| {
            let mut outer = template.clone();
            outer.insert(key.clone(), v);
            embed(outer)
        };
        match (value, expected, first_table(expected)) {
            (toml::Value::Table(sub), toml::Value::Table(sub_template), _) => {
                check_table(sub, sub_template, path, origin, &|t| {
                    embed_here(toml::Value::Table(t))
                })?;
            }
            (toml::Value::Array(items), _, Some(item_template)) => {
                // An array of tables such as [[users]]: check each entry against the first
                // default entry.
                for (i, item) in items.iter().enumerate() {
                    path.push(Segment::Index(i));
                    match item {
                        toml::Value::Table(item) => {
                            check_table(item, item_template, path, origin, &|t| {
                                embed_here(toml::Value::Array(vec![toml::Value::Table(t)]))
                            })?;
                        }
                        other => try_value(
                            embed_here(toml::Value::Array(vec![other.clone()])),
                            path,
                            origin,
                            Some(other),
                        )?,
                    }
                    path.pop();
                }
            }
            _ => try_value(embed_here(value.clone()), path, origin, Some(value))?,
        }
        path.pop();
    }
    // Every key passed alone; now the table as a whole (this catches missing required keys).
    try_value(embed(doc.clone()), path, origin, None)
}

/// The first entry of an array of tables in the defaults (the template for `[[users]]`).
fn first_table(value: &toml::Value) -> Option<&toml::Table> {
    match value {
        toml::Value::Array(items) => match items.first() {
            Some(toml::Value::Table(table)) => Some(table),
            _ => None,
        },
        _ => None,
    }
}

/// Deserializes a whole document; on failure, blames `path`, quoting `value` when serde's
/// message does not already show it (socket address errors, for one, do not).
fn try_value(
    doc: toml::Table,
    path: &[Segment],
    origin: &str,
    value: Option<&toml::Value>,
) -> Result<(), ConfigError> {
    let Err(error) = doc.try_into::<Config>() else {
        return Ok(());
    };
    let mut message = error.message().to_owned();
    if let Some(value) = value {
        let shown = value.to_string();
        let needle = match value {
            toml::Value::String(s) => s.as_str(),
            _ => shown.as_str(),
        };
        if !message.contains(needle) {
            message.push_str(&format!(", got {shown}"));
        }
    }
    Err(ConfigError::BadValue {
        key: if path.is_empty() {
            "(document)".to_owned()
        } else {
            render_path(path)
        },
        origin: origin.to_owned(),
        message,
    })
}

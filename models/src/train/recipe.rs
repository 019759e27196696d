//! TOML recipes: every field has a default (so an empty file is valid), unknown fields and
//! wrong types are errors naming the field, and `key=value` overrides from the command line
//! are applied before validation (dotted keys reach nested tables).

use serde::de::DeserializeOwned;
use std::path::Path;

/// A recipe problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read recipe {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("recipe {path}: {detail}")]
    Parse { path: String, detail: String },
    #[error("override `{0}` must look like key=value (e.g. steps=1000 or optim.lr=1e-4)")]
    Override(String),
}

/// Parses a TOML value written on the command line: numbers, booleans and arrays as TOML,
/// anything else as a string.
fn parse_value(v: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("x = {v}"))
        .ok()
        .and_then(|mut t| t.remove("x"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()))
}

/// Applies `key=value` overrides (dotted keys for nested tables) to a parsed TOML table.
pub fn apply_overrides(table: &mut toml::Table, overrides: &[String]) -> Result<(), RecipeError> {
    for o in overrides {
        let (k, v) = o.split_once('=').ok_or_else(|| RecipeError::Override(o.clone()))?;
        let parts: Vec<&str> = k.trim().split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(RecipeError::Override(o.clone()));
        }
        let mut t = &mut *table;
        for p in &parts[..parts.len() - 1] {
            let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = entry.as_table_mut().ok_or_else(|| RecipeError::Override(format!("{o} (`{p}` is not a table)")))?;
        }
        t.insert(parts[parts.len() - 1].to_string(), parse_value(v.trim()));
    }
    Ok(())
}

/// Loads a recipe file (or only defaults when `path` is None) with overrides applied.
/// `T` should use `#[serde(default, deny_unknown_fields)]` so missing fields take their
/// defaults and misspelt ones are errors.
pub fn load_recipe<T: DeserializeOwned>(path: Option<&Path>, overrides: &[String]) -> Result<T, RecipeError> {
    let name = path.map_or("<defaults>".to_string(), |p| p.display().to_string());
    let text = match path {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| RecipeError::Read { path: name.clone(), detail: e.to_string() })?
        }
        None => String::new(),
    };
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| RecipeError::Parse { path: name.clone(), detail: e.to_string() })?;
    apply_overrides(&mut table, overrides)?;
    T::deserialize(toml::Value::Table(table)).map_err(|e| RecipeError::Parse { path: name, detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Optim {
        lr: f64,
        betas: [f64; 2],
    }
    impl Default for Optim {
        fn default() -> Self {
            Optim { lr: 1e-3, betas: [0.9, 0.999] }
        }
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct R {
        steps: u64,
        name: String,
        optim: Optim,
    }
    impl Default for R {
        fn default() -> Self {
            R { steps: 10, name: "x".into(), optim: Optim::default() }
        }
    }

    #[test]
    fn defaults_overrides_and_errors() {
        let r: R = load_recipe(None, &[]).unwrap();
        assert_eq!(r, R::default());
        let r: R = load_recipe(None, &["steps=500".into(), "optim.lr=2e-4".into(), "name=run1".into()]).unwrap();
        assert_eq!((r.steps, r.optim.lr, r.name.as_str()), (500, 2e-4, "run1"));
        let e = load_recipe::<R>(None, &["stpes=5".into()]).unwrap_err().to_string();
        assert!(e.contains("stpes"), "{e}");
        let e = load_recipe::<R>(None, &["steps=fast".into()]).unwrap_err().to_string();
        assert!(e.contains("steps") || e.contains("invalid type"), "{e}");
        assert!(load_recipe::<R>(None, &["novalue".into()]).is_err());
        let dir = std::env::temp_dir().join(format!("scorch-recipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.toml");
        std::fs::write(&p, "steps = 3\n[optim]\nbetas = [0.0, 0.99]\n").unwrap();
        let r: R = load_recipe(Some(&p), &[]).unwrap();
        assert_eq!((r.steps, r.optim.betas), (3, [0.0, 0.99]));
        std::fs::write(&p, "steps = \n").unwrap();
        assert!(load_recipe::<R>(Some(&p), &[]).unwrap_err().to_string().contains("r.toml"));
        std::fs::remove_dir_all(&dir).ok();
    }
}

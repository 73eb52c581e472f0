//! Label and field selectors of list and watch calls, the subset clients use:
//! `k=v`, `k==v`, `k!=v`, `k` and `!k` for labels; `metadata.name` and
//! `metadata.namespace` with `=`, `==` and `!=` for fields.

use serde_json::Value;

use super::status::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// The conjunction of a call's `labelSelector` and `fieldSelector`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Selector {
    /// # Errors
    /// 400 for a field other than `metadata.name`/`metadata.namespace`, as a real API
    /// server answers for custom resources.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        let labels = parse_terms(labels.unwrap_or(""));
        let fields = parse_terms(fields.unwrap_or(""));
        for field in &fields {
            let (Requirement::Equals(key, _) | Requirement::NotEquals(key, _)) = field else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector term {field:?}"
                )));
            };
            if key != "metadata.name" && key != "metadata.namespace" {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {key}"
                )));
            }
        }
        Ok(Self { labels, fields })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        let labels = &metadata["labels"];
        let label_ok = self.labels.iter().all(|requirement| {
            let lookup = |key: &str| labels.get(key).and_then(Value::as_str);
            satisfied(requirement, lookup)
        });
        let field_ok = self.fields.iter().all(|requirement| {
            let lookup = |key: &str| match key {
                "metadata.name" => metadata["name"].as_str(),
                "metadata.namespace" => metadata["namespace"].as_str(),
                _ => None,
            };
            satisfied(requirement, lookup)
        });
        label_ok && field_ok
    }
}

fn satisfied<'a>(requirement: &Requirement, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
    match requirement {
        Requirement::Equals(key, value) => lookup(key) == Some(value.as_str()),
        Requirement::NotEquals(key, value) => lookup(key) != Some(value.as_str()),
        Requirement::Exists(key) => lookup(key).is_some(),
        Requirement::NotExists(key) => lookup(key).is_none(),
    }
}

fn parse_terms(selector: &str) -> Vec<Requirement> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|term| !term.is_empty())
        .map(|term| {
            if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = term.split_once("==") {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = term.split_once('=') {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_owned())
            } else {
                Requirement::Exists(term.to_owned())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_terms_all_have_to_match() {
        let object = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x"}}});
        let selector = Selector::parse(Some("app=x,!gone"), Some("metadata.namespace=ns"))
            .expect("valid selector");
        assert!(selector.matches(&object));
        let selector = Selector::parse(Some("app!=x"), None).expect("valid selector");
        assert!(!selector.matches(&object));
    }

    #[test]
    fn unsupported_fields_are_rejected() {
        assert!(Selector::parse(None, Some("status.phase=Ready")).is_err());
    }
}

//! Metadata filters: `field == value` or `field in values` on the items' metadata JSON,
//! combined with AND, evaluated by SQLite's `json_extract`.

use kvault::{Error, Result};
use rusqlite::types::Value;
use rusqlite::Connection;

/// One value a metadata field may equal.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    /// JSON `null` (also matches a missing field).
    Null,
    /// An integer (JSON `true`/`false` compare as 1/0).
    Int(i64),
    /// A float (compares numerically with integers).
    Real(f64),
    /// A string.
    Text(String),
}

/// A conjunction of clauses, each `field` equal to one of its values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    clauses: Vec<(String, Vec<FilterValue>)>,
}

impl Filter {
    /// A filter of `(field, accepted values)` clauses, all of which must hold.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty field name, one with a double quote or a control
    /// character (not expressible as a JSON path), or a clause without values.
    pub fn new(clauses: Vec<(String, Vec<FilterValue>)>) -> Result<Self> {
        for (field, values) in &clauses {
            if field.is_empty() || field.contains('"') || field.chars().any(char::is_control) {
                return Err(Error::InvalidArgument(format!(
                    "metadata filter field {field:?} must be a non-empty name without '\"' or \
                     control characters"
                )));
            }
            if values.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "metadata filter on {field:?} has no accepted values"
                )));
            }
            if values
                .iter()
                .any(|v| matches!(v, FilterValue::Real(r) if !r.is_finite()))
            {
                return Err(Error::InvalidArgument(format!(
                    "metadata filter on {field:?} has a NaN or infinite value"
                )));
            }
        }
        Ok(Self { clauses })
    }

    /// Whether the filter accepts everything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// The SQL condition and its parameters.
    fn condition(&self) -> (String, Vec<Value>) {
        let mut sql = Vec::new();
        let mut params = Vec::new();
        for (field, values) in &self.clauses {
            params.push(Value::Text(format!("$.\"{field}\"")));
            let path = params.len();
            let mut listed = Vec::new();
            let mut null = false;
            for value in values {
                match value {
                    FilterValue::Null => null = true,
                    FilterValue::Int(i) => {
                        params.push(Value::Integer(*i));
                        listed.push(format!("?{}", params.len()));
                    }
                    FilterValue::Real(r) => {
                        params.push(Value::Real(*r));
                        listed.push(format!("?{}", params.len()));
                    }
                    FilterValue::Text(t) => {
                        params.push(Value::Text(t.clone()));
                        listed.push(format!("?{}", params.len()));
                    }
                }
            }
            let extract = format!("json_extract(metadata, ?{path})");
            let mut alternatives = Vec::new();
            if null {
                alternatives.push(format!("{extract} IS NULL"));
            }
            if !listed.is_empty() {
                alternatives.push(format!("{extract} IN ({})", listed.join(", ")));
            }
            sql.push(format!("({})", alternatives.join(" OR ")));
        }
        (sql.join(" AND "), params)
    }

    /// Ids of the items of `items_table` the filter accepts, ascending.
    pub(crate) fn matching_ids(&self, conn: &Connection, items_table: &str) -> Result<Vec<i64>> {
        let (condition, params) = self.condition();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id FROM {items_table} WHERE {condition} ORDER BY id"
        ))?;
        let ids = stmt
            .query_map(rusqlite::params_from_iter(params), |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_select_by_equality_in_and_null() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, metadata TEXT);
             INSERT INTO t VALUES (1, '{\"lang\": \"en\", \"n\": 1}'), (2, '{\"lang\": \"de\", \"n\": 2.0}'),
                                  (3, '{\"lang\": null}'), (4, NULL), (5, '{\"a.b\": true}');",
        )
        .unwrap();
        let ids = |clauses: Vec<(&str, Vec<FilterValue>)>| {
            Filter::new(
                clauses
                    .into_iter()
                    .map(|(f, v)| (f.to_string(), v))
                    .collect(),
            )
            .unwrap()
            .matching_ids(&conn, "t")
            .unwrap()
        };
        let text = |s: &str| FilterValue::Text(s.into());
        assert_eq!(ids(vec![("lang", vec![text("en")])]), vec![1]);
        assert_eq!(
            ids(vec![("lang", vec![text("en"), text("de")])]),
            vec![1, 2]
        );
        assert_eq!(ids(vec![("n", vec![FilterValue::Int(2)])]), vec![2]);
        assert_eq!(ids(vec![("n", vec![FilterValue::Real(1.0)])]), vec![1]);
        assert_eq!(ids(vec![("lang", vec![FilterValue::Null])]), vec![3, 4, 5]);
        assert_eq!(ids(vec![("a.b", vec![FilterValue::Int(1)])]), vec![5]);
        assert_eq!(
            ids(vec![
                ("lang", vec![text("en")]),
                ("n", vec![FilterValue::Int(2)])
            ]),
            Vec::<i64>::new()
        );
    }

    #[test]
    fn unusable_clauses_are_refused() {
        assert!(Filter::new(vec![("".into(), vec![FilterValue::Null])]).is_err());
        assert!(Filter::new(vec![("a\"b".into(), vec![FilterValue::Null])]).is_err());
        assert!(Filter::new(vec![("a".into(), vec![])]).is_err());
        assert!(Filter::new(vec![("a".into(), vec![FilterValue::Real(f64::NAN)])]).is_err());
    }
}

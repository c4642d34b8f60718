//! Metadata filters: `field == value` or `field in values` on the items' metadata JSON,
//! combined with AND, evaluated by SQLite's `json_extract`. Shared by the table kinds whose
//! items carry metadata (vector collections, text tables).

use crate::error::{Error, Result};
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

    /// The SQL condition over the JSON column `column` (an SQL expression such as
    /// `metadata` or `i.meta`), and its parameters, numbered from `?{first}` on so the
    /// condition can join a statement that binds parameters of its own before it. An empty
    /// filter gives `1`.
    #[must_use]
    pub fn sql(&self, column: &str, first: usize) -> (String, Vec<Value>) {
        if self.clauses.is_empty() {
            return ("1".into(), Vec::new());
        }
        let offset = first.saturating_sub(1);
        let mut sql = Vec::new();
        let mut params = Vec::new();
        for (field, values) in &self.clauses {
            params.push(Value::Text(format!("$.\"{field}\"")));
            let path = params.len() + offset;
            let mut listed = Vec::new();
            let mut null = false;
            for value in values {
                match value {
                    FilterValue::Null => null = true,
                    FilterValue::Int(i) => {
                        params.push(Value::Integer(*i));
                        listed.push(format!("?{}", params.len() + offset));
                    }
                    FilterValue::Real(r) => {
                        params.push(Value::Real(*r));
                        listed.push(format!("?{}", params.len() + offset));
                    }
                    FilterValue::Text(t) => {
                        params.push(Value::Text(t.clone()));
                        listed.push(format!("?{}", params.len() + offset));
                    }
                }
            }
            let extract = format!("json_extract({column}, ?{path})");
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

    /// Ids (column `id`) of the rows of `items_table` whose `metadata` column the filter
    /// accepts, ascending.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn matching_ids(&self, conn: &Connection, items_table: &str) -> Result<Vec<i64>> {
        let (condition, params) = self.sql("metadata", 1);
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
    fn parameters_number_from_the_given_first() {
        let filter = Filter::new(vec![(
            "lang".into(),
            vec![FilterValue::Text("en".into()), FilterValue::Null],
        )])
        .unwrap();
        let (sql, params) = filter.sql("m.meta", 3);
        assert_eq!(
            sql,
            "(json_extract(m.meta, ?3) IS NULL OR json_extract(m.meta, ?3) IN (?4))"
        );
        assert_eq!(params.len(), 2);
        assert_eq!(Filter::default().sql("meta", 1), ("1".to_string(), vec![]));
    }

    #[test]
    fn unusable_clauses_are_refused() {
        assert!(Filter::new(vec![("".into(), vec![FilterValue::Null])]).is_err());
        assert!(Filter::new(vec![("a\"b".into(), vec![FilterValue::Null])]).is_err());
        assert!(Filter::new(vec![("a".into(), vec![])]).is_err());
        assert!(Filter::new(vec![("a".into(), vec![FilterValue::Real(f64::NAN)])]).is_err());
    }
}

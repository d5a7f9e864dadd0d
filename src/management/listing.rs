//! The query parameters every RabbitMQ listing takes: `page`, `page_size` (default 100, at most
//! 500), `name` with `use_regex`, `sort` and `sort_reverse`, and `columns`.
//!
//! Without `page` the whole (filtered, sorted) list is returned as a JSON array; with it, the
//! paginated envelope `{filtered_count, item_count, items, page, page_count, page_size,
//! total_count}`. `name` matches case-insensitively, as a substring or (with `use_regex`) an
//! unanchored regex, as in RabbitMQ 3.10. [`ListQuery::respond`] sorts and filters JSON items,
//! so any field can be a sort key; [`ListQuery::respond_lazy`] does it on keys read from the
//! objects, for listings that can hold 100,000 of them.

use super::dto::to_value;
use super::error::{ApiError, ApiResult};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use regex::{Regex, RegexBuilder};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Default `page_size`.
const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest `page_size`.
const MAX_PAGE_SIZE: usize = 500;
/// Longest `name` regex accepted (regex compile time and memory are bounded by it).
const MAX_PATTERN_LEN: usize = 1000;

enum NameFilter {
    /// Case-insensitive substring (RabbitMQ's default).
    Substring(String),
    /// Unanchored, case-insensitive regular expression.
    Regex(Regex),
}

impl NameFilter {
    fn matches(&self, name: &str) -> bool {
        match self {
            NameFilter::Substring(s) => name.to_lowercase().contains(s.as_str()),
            NameFilter::Regex(r) => r.is_match(name),
        }
    }
}

/// A sort key read from an object without building its JSON; it orders as [`compare`] orders
/// the JSON value it stands for (booleans, then numbers, then strings).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SortKey {
    /// A boolean field.
    Bool(bool),
    /// A number field.
    Num(f64),
    /// A string field.
    Str(std::sync::Arc<str>),
}

impl SortKey {
    fn rank(&self) -> u8 {
        match self {
            SortKey::Bool(_) => 1,
            SortKey::Num(_) => 2,
            SortKey::Str(_) => 3,
        }
    }

    fn cmp(&self, other: &SortKey) -> Ordering {
        match (self, other) {
            (SortKey::Bool(a), SortKey::Bool(b)) => a.cmp(b),
            (SortKey::Num(a), SortKey::Num(b)) => a.total_cmp(b),
            (SortKey::Str(a), SortKey::Str(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// The paginated envelope.
#[derive(Serialize)]
struct Page<D> {
    filtered_count: usize,
    item_count: usize,
    items: Vec<D>,
    page: usize,
    page_count: usize,
    page_size: usize,
    total_count: usize,
}

/// Parsed listing parameters.
pub(crate) struct ListQuery {
    page: Option<usize>,
    page_size: usize,
    name: Option<NameFilter>,
    sort: Option<Vec<String>>,
    sort_reverse: bool,
    columns: Option<Vec<Vec<String>>>,
}

fn invalid() -> ApiError {
    ApiError::bad_request("Pagination parameters are invalid")
}

fn is_true(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true")
}

impl ListQuery {
    /// Parses the query string of a listing.
    pub(crate) fn parse(q: &HashMap<String, String>) -> ApiResult<Self> {
        let page = match q.get("page") {
            None => None,
            Some(p) => Some(p.parse::<usize>().map_err(|_| invalid())?),
        };
        let size_given = match q.get("page_size") {
            None => None,
            Some(s) => Some(s.parse::<usize>().map_err(|_| invalid())?),
        };
        let page_size = size_given.unwrap_or(DEFAULT_PAGE_SIZE);
        if page == Some(0) || page_size == 0 || page_size > MAX_PAGE_SIZE {
            let size = size_given.map_or("undefined".to_string(), |s| s.to_string());
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_pagination_parameters",
                format!(
                    "Invalid pagination parameters: page number {}, page size {size}",
                    page.unwrap_or(0)
                ),
            ));
        }
        let name = match q.get("name").filter(|n| !n.is_empty()) {
            None => None,
            Some(n) if is_true(q, "use_regex") => {
                if n.len() > MAX_PATTERN_LEN {
                    return Err(invalid());
                }
                // Case-insensitive, as RabbitMQ 3.10 matches (recorded in
                // tests/fixtures/rabbitmq-3.10/ui-shapes.json).
                let re = RegexBuilder::new(n)
                    .case_insensitive(true)
                    .build()
                    .map_err(|_| invalid())?;
                Some(NameFilter::Regex(re))
            }
            Some(n) => Some(NameFilter::Substring(n.to_lowercase())),
        };
        let sort = q.get("sort").filter(|s| !s.is_empty()).map(|s| split(s));
        let columns = q.get("columns").filter(|c| !c.is_empty()).map(|c| {
            c.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| split(s.trim()))
                .collect()
        });
        Ok(ListQuery {
            page,
            page_size,
            name,
            sort,
            sort_reverse: is_true(q, "sort_reverse"),
            columns,
        })
    }

    /// Like [`ListQuery::respond`] for many objects, paging and sorting on the server before
    /// anything is built per object (rabbitmq-management#50, PR #399): the name filter runs on
    /// the names, the sort on keys that `sort_key` reads straight from each object (the
    /// default sort is `(vhost, name)`), and only the answered page is built and serialized
    /// from its DTOs. Only a `sort` field that `sort_key` does not know, or `columns`, makes
    /// it build every (filtered) item as JSON first. This keeps a page of 100,000 queues cheap.
    pub(crate) fn respond_lazy<T, D: Serialize>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> (&str, &str),
        sort_key: impl Fn(&T, &[String]) -> Option<SortKey>,
        build: impl Fn(&T) -> D,
    ) -> ApiResult<Response> {
        let total = items.len();
        if let Some(f) = &self.name {
            items.retain(|t| f.matches(key(t).1));
        }
        let keyed = match self.sort.as_deref() {
            Some(p) if self.columns.is_none() => {
                let keys: Option<Vec<SortKey>> = items.iter().map(|t| sort_key(t, p)).collect();
                match keys {
                    Some(k) => Some(k),
                    None => return self.respond_built(items, total, &build),
                }
            }
            Some(_) => return self.respond_built(items, total, &build),
            None if self.columns.is_some() => return self.respond_built(items, total, &build),
            None => None,
        };
        // Order indexes by the key, ties by (vhost, name) so pages are stable between calls;
        // sort_reverse reverses the whole order.
        let base = |a: usize, b: usize| match &keyed {
            Some(keys) => keys[a]
                .cmp(&keys[b])
                .then_with(|| key(&items[a]).cmp(&key(&items[b]))),
            None => key(&items[a]).cmp(&key(&items[b])),
        };
        let cmp = |a: &usize, b: &usize| {
            let o = base(*a, *b);
            if self.sort_reverse { o.reverse() } else { o }
        };
        let mut order: Vec<usize> = (0..items.len()).collect();
        // A page needs only the items up to its end in order: select them in linear time,
        // then sort just those (page 1 of 100,000 sorts 100 items, not 100,000).
        let end = self
            .page
            .map_or(order.len(), |p| p.saturating_mul(self.page_size))
            .min(order.len());
        if end > 0 && end < order.len() {
            order.select_nth_unstable_by(end - 1, cmp);
            order.truncate(end);
        }
        order.sort_unstable_by(cmp);
        let filtered = items.len();
        let Some(page) = self.page else {
            let all: Vec<D> = order.iter().map(|&i| build(&items[i])).collect();
            return Ok(Json(all).into_response());
        };
        let page_count = self.check_page(page, filtered)?;
        let window: Vec<D> = order
            .iter()
            .skip((page - 1).saturating_mul(self.page_size))
            .take(self.page_size)
            .map(|&i| build(&items[i]))
            .collect();
        Ok(Json(Page {
            filtered_count: filtered,
            item_count: window.len(),
            items: window,
            page,
            page_count,
            page_size: self.page_size,
            total_count: total,
        })
        .into_response())
    }

    /// The slow path of [`ListQuery::respond_lazy`]: every (already filtered) item as JSON,
    /// then [`ListQuery::respond`]; `total` is the count before filtering.
    fn respond_built<T, D: Serialize>(
        &self,
        items: Vec<T>,
        total: usize,
        build: impl Fn(&T) -> D,
    ) -> ApiResult<Response> {
        let values = items.iter().map(|t| to_value(&build(t))).collect();
        let mut out = self.respond(values, &["vhost", "name"])?;
        if let Some(t) = out.get_mut("total_count") {
            *t = Value::from(total);
        }
        Ok(Json(out).into_response())
    }

    /// The page count, or RabbitMQ's `page_out_of_range`.
    fn check_page(&self, page: usize, filtered: usize) -> ApiResult<usize> {
        let page_count = filtered.div_ceil(self.page_size);
        if page > 1 && page > page_count {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "page_out_of_range",
                format!(
                    "Page out of range, page: {page} page size: {}, len: {filtered}",
                    self.page_size
                ),
            ));
        }
        Ok(page_count)
    }

    /// Only `columns`, for single-object answers.
    pub(crate) fn project_one(&self, item: Value) -> Value {
        match &self.columns {
            Some(cols) => project(&item, cols),
            None => item,
        }
    }

    /// Filters, sorts, paginates and projects `items`; `default_sort` applies without `sort`.
    pub(crate) fn respond(&self, mut items: Vec<Value>, default_sort: &[&str]) -> ApiResult<Value> {
        let total = items.len();
        if let Some(f) = &self.name {
            items.retain(|item| f.matches(item.get("name").and_then(Value::as_str).unwrap_or("")));
        }
        let keys: Vec<Vec<String>> = match &self.sort {
            Some(k) => vec![k.clone()],
            None => default_sort.iter().map(|k| split(k)).collect(),
        };
        if !keys.is_empty() {
            items.sort_by(|a, b| {
                let ord = keys
                    .iter()
                    .map(|k| compare(lookup(a, k), lookup(b, k)))
                    .find(|o| *o != Ordering::Equal)
                    .unwrap_or(Ordering::Equal);
                if self.sort_reverse {
                    ord.reverse()
                } else {
                    ord
                }
            });
        } else if self.sort_reverse {
            items.reverse();
        }
        let filtered = items.len();
        let Some(page) = self.page else {
            return Ok(Value::Array(self.project_all(items)));
        };
        let page_count = self.check_page(page, filtered)?;
        let start = (page - 1).saturating_mul(self.page_size);
        let window: Vec<Value> = items.into_iter().skip(start).take(self.page_size).collect();
        let window = self.project_all(window);
        Ok(json!({
            "filtered_count": filtered,
            "item_count": window.len(),
            "items": window,
            "page": page,
            "page_count": page_count,
            "page_size": self.page_size,
            "total_count": total,
        }))
    }

    fn project_all(&self, items: Vec<Value>) -> Vec<Value> {
        match &self.columns {
            Some(cols) => items.iter().map(|i| project(i, cols)).collect(),
            None => items,
        }
    }
}

/// A dotted field path (`message_stats.publish`) as its parts.
fn split(s: &str) -> Vec<String> {
    s.split('.').map(str::to_string).collect()
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

/// Orders JSON values: absent and null first, then booleans, numbers, strings.
fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> u8 {
        match v {
            None | Some(Value::Null) => 0,
            Some(Value::Bool(_)) => 1,
            Some(Value::Number(_)) => 2,
            Some(Value::String(_)) => 3,
            Some(Value::Array(_)) => 4,
            Some(Value::Object(_)) => 5,
        }
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Keeps only the given dotted paths of an object (absent ones are left out).
fn project(item: &Value, cols: &[Vec<String>]) -> Value {
    let mut out = Map::new();
    for path in cols {
        if let Some(v) = lookup(item, path) {
            insert_path(&mut out, path, v.clone());
        }
    }
    Value::Object(out)
}

fn insert_path(map: &mut Map<String, Value>, path: &[String], v: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert(last.clone(), v);
        }
        [first, rest @ ..] => {
            let entry = map
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                insert_path(m, rest, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"name": "b", "vhost": "/", "n": {"x": 2}}),
            json!({"name": "A", "vhost": "/", "n": {"x": 3}}),
            json!({"name": "c", "vhost": "/", "n": {"x": 1}}),
        ]
    }

    fn names(v: &Value) -> Vec<&str> {
        let arr = v.get("items").unwrap_or(v).as_array().expect("array");
        arr.iter()
            .map(|i| i.get("name").and_then(Value::as_str).unwrap_or(""))
            .collect()
    }

    #[test]
    fn unpaginated_is_a_sorted_array() {
        let r = ListQuery::parse(&q(&[]))
            .expect("parse")
            .respond(items(), &["vhost", "name"])
            .expect("ok");
        assert_eq!(names(&r), ["A", "b", "c"]);
    }

    #[test]
    fn sorts_by_nested_keys_and_reverses() {
        let r = ListQuery::parse(&q(&[("sort", "n.x"), ("sort_reverse", "true")]))
            .expect("parse")
            .respond(items(), &["name"])
            .expect("ok");
        assert_eq!(names(&r), ["A", "b", "c"]);
        let r = ListQuery::parse(&q(&[("sort", "n.x")]))
            .expect("parse")
            .respond(items(), &["name"])
            .expect("ok");
        assert_eq!(names(&r), ["c", "b", "A"]);
    }

    #[test]
    fn paginates_with_rabbitmq_envelope() {
        let r = ListQuery::parse(&q(&[("page", "2"), ("page_size", "2")]))
            .expect("parse")
            .respond(items(), &["name"])
            .expect("ok");
        assert_eq!(
            r,
            json!({"filtered_count": 3, "item_count": 1, "items": [{"name": "c", "vhost": "/", "n": {"x": 1}}],
                   "page": 2, "page_count": 2, "page_size": 2, "total_count": 3})
        );
    }

    #[test]
    fn filters_by_substring_or_regex() {
        let r = ListQuery::parse(&q(&[("name", "a")]))
            .expect("parse")
            .respond(items(), &["name"])
            .expect("ok");
        assert_eq!(names(&r), ["A"]);
        let r = ListQuery::parse(&q(&[("name", "^[bc]$"), ("use_regex", "true")]))
            .expect("parse")
            .respond(items(), &["name"])
            .expect("ok");
        assert_eq!(names(&r), ["b", "c"]);
        // Regexes ignore case too, as RabbitMQ's do.
        let r = ListQuery::parse(&q(&[("name", "^[AB]$"), ("use_regex", "true")]))
            .expect("parse")
            .respond(items(), &["name"])
            .expect("ok");
        assert_eq!(names(&r), ["A", "b"]);
    }

    #[test]
    fn projects_columns() {
        let r = ListQuery::parse(&q(&[("columns", "name,n.x,missing")]))
            .expect("parse")
            .respond(items(), &["name"])
            .expect("ok");
        assert_eq!(r[0], json!({"name": "A", "n": {"x": 3}}));
    }

    /// (vhost, name, n) rows for respond_lazy.
    fn rows(count: usize) -> Vec<(String, String, u64)> {
        // Every third value repeats, so ties need the (vhost, name) tie-break.
        (0..count)
            .map(|i| {
                let vh = if i % 2 == 0 { "/" } else { "b" };
                (
                    vh.to_string(),
                    format!("q{:03}", (i * 37) % count),
                    (i % 7) as u64 / 3,
                )
            })
            .collect()
    }

    fn lazy_names(params: &[(&str, &str)], data: Vec<(String, String, u64)>) -> Vec<String> {
        let resp = ListQuery::parse(&q(params))
            .expect("parse")
            .respond_lazy(
                data,
                |(v, n, _)| (v.as_str(), n.as_str()),
                |(_, n, x), path| match path {
                    [p] if p == "n" => Some(SortKey::Num(*x as f64)),
                    [p] if p == "name" => Some(SortKey::Str(std::sync::Arc::from(n.as_str()))),
                    _ => None,
                },
                |(v, n, x)| json!({"vhost": v, "name": n, "n": x}),
            )
            .expect("ok");
        let body = futures_body(resp);
        names(&body).into_iter().map(str::to_string).collect()
    }

    fn futures_body(resp: Response) -> Value {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt")
            .block_on(axum::body::to_bytes(resp.into_body(), usize::MAX))
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn lazy_pages_equal_slices_of_the_full_order() {
        let data = rows(50);
        // The whole order, computed naively: key, then (vhost, name); reversed whole.
        let mut full = data.clone();
        full.sort_by(|a, b| a.2.cmp(&b.2).then((&a.0, &a.1).cmp(&(&b.0, &b.1))));
        let asc: Vec<String> = full.iter().map(|r| r.1.clone()).collect();
        let desc: Vec<String> = asc.iter().rev().cloned().collect();
        for (reverse, expected) in [("false", &asc), ("true", &desc)] {
            for page in 1..=4 {
                let p = page.to_string();
                let got = lazy_names(
                    &[
                        ("sort", "n"),
                        ("sort_reverse", reverse),
                        ("page", &p),
                        ("page_size", "15"),
                    ],
                    data.clone(),
                );
                let start = (page - 1) * 15;
                let want: Vec<String> = expected.iter().skip(start).take(15).cloned().collect();
                assert_eq!(got, want, "page {page} reverse {reverse}");
            }
        }
        // Default order (vhost, name) and an unknown key (built as JSON) agree with respond().
        let mut by_name = data.clone();
        by_name.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let want: Vec<String> = by_name.iter().take(10).map(|r| r.1.clone()).collect();
        assert_eq!(
            lazy_names(&[("page", "1"), ("page_size", "10")], data.clone()),
            want
        );
        let got = lazy_names(
            &[("sort", "vhost"), ("page", "1"), ("page_size", "10")],
            data,
        );
        assert!(
            got.iter()
                .all(|n| by_name.iter().any(|r| &r.1 == n && r.0 == "/"))
        );
    }

    #[test]
    fn bad_pagination_is_rejected_as_rabbitmq_does() {
        for (params, error) in [
            (vec![("page", "0")], "invalid_pagination_parameters"),
            (
                vec![("page", "1"), ("page_size", "501")],
                "invalid_pagination_parameters",
            ),
            (vec![("page", "x")], "bad_request"),
            (vec![("page_size", "-1")], "bad_request"),
            (vec![("name", "("), ("use_regex", "true")], "bad_request"),
        ] {
            let e = ListQuery::parse(&q(&params)).err().expect("error");
            assert_eq!(e.error, error, "{params:?}");
        }
        let e = ListQuery::parse(&q(&[("page", "3")]))
            .expect("parse")
            .respond(items(), &[])
            .expect_err("out of range");
        assert_eq!(e.error, "page_out_of_range");
        // An empty first page is not out of range.
        let r = ListQuery::parse(&q(&[("page", "1")]))
            .expect("parse")
            .respond(vec![], &[])
            .expect("ok");
        assert_eq!(r["page_count"], 0);
    }
}

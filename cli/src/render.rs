//! The API's documents as tables for people (`--json` prints them unchanged).
//! Every renderer reads what it knows and shows `-` for what is missing, so
//! a field the API adds later never breaks the table.

use serde_json::Value;

/// Left-aligned columns two spaces apart, a header row first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A field as a cell: strings bare, numbers and booleans as written, `-` for none.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn cells(v: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| cell(&v[*k])).collect()
}

fn rows(list: &Value, keys: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| a.iter().map(|v| cells(v, keys)).collect())
        .unwrap_or_default()
}

/// `key: value` lines for a small object, in the order given.
fn pairs(v: &Value, keys: &[&str]) -> String {
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    keys.iter()
        .filter(|k| !v[**k].is_null())
        .map(|k| format!("{k:<width$}  {}\n", cell(&v[*k])))
        .collect()
}

/// `GET /stock/{sku}`: the totals, then one row per location.
pub fn stock(v: &Value) -> String {
    let mut out = format!(
        "{}: {} available, {} damaged\n",
        cell(&v["sku"]),
        cell(&v["available"]),
        cell(&v["damaged"])
    );
    let keys = [
        "location",
        "available",
        "damaged",
        "version",
        "updated_at",
        "last_reason",
        "last_reference",
    ];
    out.push_str(&table(&keys, &rows(&v["levels"], &keys)));
    out
}

/// A ledger page (or every page, joined): newest first.
pub fn ledger(v: &Value) -> String {
    let keys = ["at", "location", "delta", "reason", "actor", "reference", "note"];
    let mut out = table(&keys, &rows(&v["entries"], &keys));
    if let Some(next) = v["next"].as_str() {
        out.push_str(&format!("more: --all, or the API's cursor {next}\n"));
    }
    out
}

/// An adjustment's answer.
pub fn adjustment(v: &Value) -> String {
    pairs(
        v,
        &[
            "adjustment",
            "sku",
            "location",
            "reason",
            "delta",
            "before",
            "available",
            "version",
        ],
    )
}

/// `GET /feeds/held`, with the command that releases each.
pub fn held(v: &Value) -> String {
    let list = &v["held"];
    if list.as_array().is_none_or(|a| a.is_empty()) {
        return "no held feeds\n".into();
    }
    table(
        &["feed", "etag", "reason", "held_at"],
        &rows(list, &["feed", "etag", "reason", "held_at"]),
    )
}

/// `POST /feeds/release`'s answer.
pub fn released(v: &Value) -> String {
    pairs(v, &["feed", "etag", "state"])
}

/// A channel's mode.
pub fn mode(v: &Value) -> String {
    pairs(v, &["channel", "mode", "since", "actor", "reason"])
}

/// A run: its state, then its totals.
pub fn run(v: &Value) -> String {
    let mut out = pairs(v, &["id", "kind", "status", "started_at", "finished_at", "error"]);
    out.push_str(&totals(&v["totals"]));
    out
}

fn totals(t: &Value) -> String {
    match t.as_object() {
        Some(map) if !map.is_empty() => {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            let row = vec![keys.iter().map(|k| cell(&t[*k])).collect()];
            table(&keys, &row)
        }
        _ => String::new(),
    }
}

/// The drift report: the run it comes from, the totals, the differing SKUs,
/// and the SKUs only one side carries.
pub fn drift(v: &Value) -> String {
    let run = &v["run"];
    let mut out = format!(
        "{} drift, run {} ({}, finished {})\n",
        cell(&v["channel"]),
        cell(&run["id"]),
        cell(&run["status"]),
        cell(&run["finished_at"])
    );
    out.push_str(&totals(&v["totals"]));
    let skus = &v["skus"];
    if skus.as_array().is_some_and(|a| !a.is_empty()) {
        out.push('\n');
        let keys = ["sku", "channel", "expected", "since", "explained"];
        out.push_str(&table(&keys, &rows(skus, &keys)));
    }
    for (key, label) in [
        ("channel_only", "on the channel only"),
        ("master_only", "in the master only"),
    ] {
        if let Some(list) = v[key].as_array().filter(|a| !a.is_empty()) {
            out.push_str(&format!(
                "{label}: {}\n",
                list.iter().map(cell).collect::<Vec<_>>().join(" ")
            ));
        }
    }
    if let Some(next) = v["next"].as_str() {
        out.push_str(&format!("more: --all, or the API's cursor {next}\n"));
    }
    out
}

/// SKUs whose drift nothing in flight explains (`explained` false or absent).
pub fn unexplained(v: &Value) -> usize {
    v["skus"]
        .as_array()
        .map(|a| a.iter().filter(|s| s["explained"] != Value::Bool(true)).count())
        .unwrap_or(0)
}

/// `POST /channels/{name}/resync`'s answer.
pub fn resynced(v: &Value) -> String {
    format!("{}: {} SKU(s) queued\n", cell(&v["channel"]), cell(&v["queued"]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up() {
        let t = table(
            &["a", "long"],
            &[vec!["xyz".into(), "1".into()], vec!["q".into(), "22".into()]],
        );
        assert_eq!(t, "a    long\nxyz  1\nq    22\n");
    }

    #[test]
    fn stock_shows_totals_and_levels() {
        let v = json!({"sku": "CAP", "available": 5, "damaged": 1, "levels": [
            {"location": "shop-1", "available": 5, "damaged": 1, "version": 3, "updated_at": "2026-01-01T00:00:00Z", "last_reason": "sale", "last_reference": null}]});
        let out = stock(&v);
        assert!(out.starts_with("CAP: 5 available, 1 damaged\nlocation"), "{out}");
        assert!(
            out.contains("shop-1    5          1        3        2026-01-01T00:00:00Z  sale         -"),
            "{out}"
        );
    }

    #[test]
    fn drift_lists_skus_and_one_sided_ones_and_counts_the_unexplained() {
        let v = json!({"channel": "web", "run": {"id": "r1", "status": "done", "finished_at": "t"},
            "totals": {"compared": 3, "differing": 2},
            "skus": [{"sku": "A", "channel": 4, "expected": 5, "since": "t0", "explained": false},
                     {"sku": "B", "channel": 1, "expected": 0, "since": "t1", "explained": true}],
            "channel_only": ["X"], "master_only": [], "next": null});
        let out = drift(&v);
        assert!(out.contains("web drift, run r1 (done, finished t)"), "{out}");
        assert!(out.contains("compared  differing\n3         2\n"), "{out}");
        assert!(out.contains("A    4        5         t0     false"), "{out}");
        assert!(out.contains("on the channel only: X\n"), "{out}");
        assert!(!out.contains("master only"), "{out}");
        assert_eq!(unexplained(&v), 1);
        assert_eq!(unexplained(&json!({"skus": []})), 0);
    }

    #[test]
    fn missing_fields_are_dashes_and_empty_lists_say_so() {
        assert_eq!(held(&json!({"held": []})), "no held feeds\n");
        assert_eq!(
            mode(&json!({"channel": "web", "mode": "shadow"})),
            "channel  web\nmode     shadow\n"
        );
        let r = run(&json!({"id": "r", "kind": "import", "status": "done", "totals": {"imported": 2}}));
        assert!(r.ends_with("imported\n2\n"), "{r}");
        assert!(ledger(&json!({"entries": [{"at": "t", "delta": -1}], "next": "c"})).contains("more: --all"));
        assert_eq!(
            resynced(&json!({"channel": "web", "queued": 3})),
            "web: 3 SKU(s) queued\n"
        );
    }
}

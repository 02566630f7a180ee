//! `--set PATH=VALUE`: override any scenario field by dotted path.
//!
//! `PATH` walks objects by key and arrays by index
//! (`providers.llm_provider.tiers.0.slots`). `VALUE` is parsed as JSON when
//! it is valid JSON (`3`, `true`, `{"dist":"constant","ms":5}`), otherwise
//! taken as a string (`policy=full`).

use serde_json::Value;

/// Optional objects a scenario may leave out, with an example of each: a
/// path into one that is not set gets a hint to set it whole.
const OPTIONAL_OBJECTS: [(&str, &str); 4] = [
    (
        "token_limit",
        r#"{"tokens_per_min":90000,"token_burst":90000}"#,
    ),
    ("quality", r#"{"midpoint":0.7,"slope":10}"#),
    ("rate_limit", r#"{"rate_per_s":5,"burst":20}"#),
    ("tail", r#"{"prob":0.1,"mult":3}"#),
];

fn not_set_hint(joined: &str, path: &[String], seg: &str) -> Option<String> {
    let (_, example) = OPTIONAL_OBJECTS.iter().find(|(k, _)| *k == seg)?;
    let at = path
        .iter()
        .take_while(|s| *s != seg)
        .chain(std::iter::once(&seg.to_string()))
        .cloned()
        .collect::<Vec<_>>()
        .join(".");
    Some(format!(
        "--set {joined}: `{seg}` is not set there; set it whole, e.g. --set '{at}={example}'"
    ))
}

/// One parsed `PATH=VALUE` override.
#[derive(Clone, Debug, PartialEq)]
pub struct SetOverride {
    /// Dotted path segments.
    pub path: Vec<String>,
    /// The value to put there.
    pub value: Value,
}

impl SetOverride {
    /// Parses `PATH=VALUE`.
    pub fn parse(text: &str) -> Result<SetOverride, String> {
        let (path, raw) = text
            .split_once('=')
            .ok_or_else(|| format!("--set {text}: expected PATH=VALUE"))?;
        let path = path.trim();
        if path.contains('[') {
            let dotted = path.replace('[', ".").replace(']', "");
            return Err(format!(
                "--set {path}: write list indices as path segments: --set {dotted}={raw}"
            ));
        }
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!(
                "--set {text}: expected a dotted path like workload.pdfs"
            ));
        }
        let value = match serde_json::from_str(raw) {
            Ok(v) => v,
            // What starts like JSON must be JSON: a broken object must not
            // quietly become a string.
            Err(e)
                if raw.trim_start().starts_with([
                    '{', '[', '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
                ]) =>
            {
                return Err(format!(
                    "--set {path}: the value is not valid JSON ({e}); quote a string only if it is JSON, e.g. --set 'policy=full' or --set 'arrivals={{\"pattern\":\"poisson\",\"rate_per_s\":2}}'"
                ));
            }
            Err(_) => Value::String(raw.to_string()),
        };
        Ok(SetOverride {
            path: path.split('.').map(String::from).collect(),
            value,
        })
    }

    /// Checks that the path names a field of `doc` (a scenario with every
    /// field present) or an optional object it may set, without changing
    /// `doc`: what a sweep checks for each matrix key before any run.
    pub fn check_known(&self, doc: &Value) -> Result<(), String> {
        let mut scratch = doc.clone();
        self.apply(&mut scratch)?;
        let pointer: String = self.path[..self.path.len() - 1]
            .iter()
            .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
            .collect();
        let last = &self.path[self.path.len() - 1];
        match doc.pointer(&pointer) {
            Some(Value::Object(map))
                if !map.contains_key(last) && !OPTIONAL_OBJECTS.iter().any(|(k, _)| k == last) =>
            {
                let known: Vec<&str> = map.keys().map(String::as_str).collect();
                let here = if pointer.is_empty() {
                    "the scenario".to_string()
                } else {
                    self.path[..self.path.len() - 1].join(".")
                };
                Err(format!(
                    "--set {}: {here} has no field `{last}` (fields: {})",
                    self.path.join("."),
                    known.join(", ")
                ))
            }
            _ => Ok(()),
        }
    }

    /// Applies the override to `doc`. Intermediate objects and arrays must
    /// exist; the last key of an object may be new (the scenario's
    /// deserializer then rejects it if it is not a field).
    pub fn apply(&self, doc: &mut Value) -> Result<(), String> {
        let joined = self.path.join(".");
        let mut cur = doc;
        for (i, seg) in self.path.iter().enumerate() {
            let last = i + 1 == self.path.len();
            let here = self.path[..i].join(".");
            let here = if here.is_empty() {
                "the scenario".to_string()
            } else {
                here
            };
            cur = match cur {
                Value::Object(map) => {
                    if last {
                        map.insert(seg.clone(), self.value.clone());
                        return Ok(());
                    }
                    if map.get(seg).is_none_or(Value::is_null) {
                        if let Some(hint) = not_set_hint(&joined, &self.path[..=i], seg) {
                            return Err(hint);
                        }
                    }
                    if !map.contains_key(seg) {
                        let known: Vec<&str> = map.keys().map(String::as_str).collect();
                        return Err(format!(
                            "--set {joined}: {here} has no field `{seg}` (fields: {})",
                            known.join(", ")
                        ));
                    }
                    map.get_mut(seg).expect("checked")
                }
                Value::Array(items) => {
                    let len = items.len();
                    let idx: usize = seg.parse().map_err(|_| {
                        format!("--set {joined}: {here} is a list; expected an index, got `{seg}`")
                    })?;
                    let slot = items.get_mut(idx).ok_or_else(|| {
                        format!(
                            "--set {joined}: {here} has {len} entries; index {idx} is out of range"
                        )
                    })?;
                    if last {
                        *slot = self.value.clone();
                        return Ok(());
                    }
                    slot
                }
                _ => {
                    return Err(format!(
                        "--set {joined}: {here} is a value, not an object or list"
                    ));
                }
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_json_or_string_values() {
        let s = SetOverride::parse("workload.pdfs=3").unwrap();
        assert_eq!(s.path, ["workload", "pdfs"]);
        assert_eq!(s.value, json!(3));
        assert_eq!(
            SetOverride::parse("policy=full").unwrap().value,
            json!("full")
        );
        assert_eq!(
            SetOverride::parse("a.b={\"x\":1}").unwrap().value,
            json!({"x": 1})
        );
        assert!(SetOverride::parse("nopath").is_err());
        let e = SetOverride::parse(r#"arrivals={"pattern":"poisson""#).unwrap_err();
        assert!(e.contains("arrivals: the value is not valid JSON"), "{e}");
        assert!(SetOverride::parse("workload.pdfs=3x").is_err());
        assert_eq!(SetOverride::parse("x=NaN").unwrap().value, json!("NaN"));
        assert!(SetOverride::parse("a..b=1").is_err());
    }

    #[test]
    fn check_known_rejects_unknown_leaves_but_not_optional_objects() {
        let doc = json!({"w": {"pdfs": 1}, "t": [{"slots": 2}]});
        let ok = |p: &str| SetOverride::parse(p).unwrap().check_known(&doc);
        assert!(ok("w.pdfs=3").is_ok());
        assert!(ok("t.0.token_limit={}").is_ok());
        let e = ok("w.pdfz=3").unwrap_err();
        assert!(e.contains("w has no field `pdfz` (fields: pdfs)"), "{e}");
        assert!(ok("t.3.slots=1").unwrap_err().contains("out of range"));
        assert!(
            ok("nope=1")
                .unwrap_err()
                .contains("the scenario has no field")
        );
        assert_eq!(doc, json!({"w": {"pdfs": 1}, "t": [{"slots": 2}]}));
    }

    #[test]
    fn applies_through_objects_and_arrays() {
        let mut doc = json!({"p": {"tiers": [{"slots": 2}, {"slots": 4}]}});
        SetOverride::parse("p.tiers.1.slots=9")
            .unwrap()
            .apply(&mut doc)
            .unwrap();
        assert_eq!(doc["p"]["tiers"][1]["slots"], json!(9));
        let e = SetOverride::parse("p.tiers.5.slots=1")
            .unwrap()
            .apply(&mut doc)
            .unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = SetOverride::parse("p.tires.0=1")
            .unwrap()
            .apply(&mut doc)
            .unwrap_err();
        assert!(e.contains("no field `tires`"), "{e}");
        let e = SetOverride::parse("p.tiers.0.slots.x=1")
            .unwrap()
            .apply(&mut doc)
            .unwrap_err();
        assert!(e.contains("not an object"), "{e}");
        let mut doc = json!({"t": [{"slots": 2, "rate_limit": null}]});
        for path in ["t.0.token_limit.tokens_per_min=5", "t.0.rate_limit.burst=3"] {
            let e = SetOverride::parse(path)
                .unwrap()
                .apply(&mut doc)
                .unwrap_err();
            assert!(e.contains("is not set there; set it whole"), "{e}");
            assert!(e.contains("--set 't.0."), "{e}");
        }
    }
}

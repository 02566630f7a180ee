//! One run's row of `runs.csv`, by column name, held compactly.
//!
//! `collect` holds every run's row at once (the statistics need them all),
//! and a row has some 150 cells. As a map of `String` to `String` a cell
//! cost about 130 bytes, most of it the column name repeated in every row
//! and two heap blocks per cell: 20 kB a row, 200 MB for 10,000 runs. Here
//! a column name is interned once per process and a row's values share one
//! buffer, so a cell costs its text plus a map entry of 24 bytes.

use std::collections::{BTreeMap, HashSet};
use std::sync::{LazyLock, Mutex};

/// Column names seen by this process. They are few (a sweep's columns,
/// its tiers' columns), so they are kept for the process's life.
static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Default::default);

/// The interned copy of a column name.
fn intern(name: &str) -> &'static str {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&n) = names.get(name) {
        return n;
    }
    let n: &'static str = Box::leak(name.into());
    names.insert(n);
    n
}

/// A row: column name to value (text as written), iterated by name.
#[derive(Clone, Default)]
pub struct Row {
    /// Name -> (start, end) of the value in `text`.
    cells: BTreeMap<&'static str, (u32, u32)>,
    text: String,
}

impl Row {
    /// An empty row.
    pub fn new() -> Row {
        Row::default()
    }

    /// Sets column `name` to `value` (replacing what it held).
    pub fn insert(&mut self, name: &str, value: &str) {
        // A replaced value's bytes stay in the buffer: replacing is rare
        // (a column that two of a run's files both have).
        let start = self.text.len();
        self.text.push_str(value);
        let offset = |i: usize| u32::try_from(i).expect("a row's text is under 4 GB");
        let span = (offset(start), offset(self.text.len()));
        match self.cells.get_mut(name) {
            Some(cell) => *cell = span,
            None => {
                self.cells.insert(intern(name), span);
            }
        }
    }

    /// The value of column `name`, if the row has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cells
            .get(name)
            .map(|&(a, b)| &self.text[a as usize..b as usize])
    }

    /// Whether the row has column `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.cells.contains_key(name)
    }

    /// Column names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.cells.keys().copied()
    }

    /// (name, value) pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.cells
            .iter()
            .map(|(&k, &(a, b))| (k, &self.text[a as usize..b as usize]))
    }

    /// Columns held.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// True when the row has no column.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Row {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Row {
        let mut r = Row::new();
        for (k, v) in iter {
            r.insert(k.as_ref(), v.as_ref());
        }
        r
    }
}

impl std::ops::Index<&str> for Row {
    type Output = str;

    /// The value of a column the row must have.
    fn index(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("row has no column {name:?}"))
    }
}

impl PartialEq for Row {
    fn eq(&self, o: &Row) -> bool {
        self.len() == o.len() && self.iter().eq(o.iter())
    }
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the inserts (names repeated, values replaced), the row
        /// answers like a map of strings.
        #[test]
        fn row_matches_a_string_map(
            ops in prop::collection::vec(("[a-d]{1,2}", "[ -~]{0,12}"), 0..60)
        ) {
            let mut row = Row::new();
            let mut map = BTreeMap::<String, String>::new();
            for (k, v) in &ops {
                row.insert(k, v);
                map.insert(k.clone(), v.clone());
            }
            prop_assert_eq!(row.len(), map.len());
            let pairs: Vec<(&str, &str)> = row.iter().collect();
            prop_assert!(pairs.into_iter().eq(map.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
            for k in ["a", "b", "ab", "dd", "zz"] {
                prop_assert_eq!(row.get(k), map.get(k).map(String::as_str));
                prop_assert_eq!(row.contains_key(k), map.contains_key(k));
            }
            let rebuilt: Row = map.iter().collect();
            prop_assert_eq!(&rebuilt, &row);
        }
    }

    #[test]
    fn names_are_shared_between_rows_and_values_kept_apart() {
        let a: Row = [("policy", "full"), ("seed", "1")].into_iter().collect();
        let b: Row = [("policy", "fifo_cheapest"), ("seed", "22")]
            .into_iter()
            .collect();
        let name = |r: &Row| r.keys().next().unwrap().as_ptr();
        assert_eq!(name(&a), name(&b), "one interned name");
        assert_eq!((&a["policy"], &b["policy"]), ("full", "fifo_cheapest"));
        assert_eq!((&a["seed"], &b["seed"]), ("1", "22"));
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), r#"{"policy": "full", "seed": "1"}"#);
    }

    #[test]
    #[should_panic(expected = "row has no column \"missing\"")]
    fn indexing_a_missing_column_names_it() {
        let _ = &Row::new()["missing"];
    }
}

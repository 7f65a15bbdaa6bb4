//! Which district a report is about: from the record's structured field when it has one, else
//! from the address, else from the title and text.
//!
//! Used by every decoder to fill `Record::district`, which detection keys its windows on and
//! routing reads. The [`Gazetteer`] knows the city's districts by name and by administrative code;
//! it also recognises the anonymised names of the training data (`A3区`, `B6县`, `A7市`), so the
//! models' own corpus and live records yield districts the same way.

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;
use std::sync::LazyLock;

/// Changsha's districts, counties and county-level cities with their 6-digit administrative
/// codes (GB/T 2260): the default gazetteer.
pub const CHANGSHA_DISTRICTS: [(&str, &str); 9] = [
    ("430102", "芙蓉区"),
    ("430103", "天心区"),
    ("430104", "岳麓区"),
    ("430105", "开福区"),
    ("430111", "雨花区"),
    ("430112", "望城区"),
    ("430121", "长沙县"),
    ("430181", "浏阳市"),
    ("430182", "宁乡市"),
];

/// An anonymised district of the training data: one uppercase letter, one or two digits, then
/// 区/县/市, not glued to a longer ASCII word. The letter and digits are required, which is also
/// what keeps everyday words such as 小区 (housing estate) from ever matching.
static ANONYMISED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^A-Za-z0-9])([A-Z][0-9]{1,2}[区县市])")
        .expect("the anonymised-district pattern is a valid regex")
});

/// A city's districts as `(code, name)` pairs, with one searcher over all the names.
///
/// [`Gazetteer::changsha`] is the default, built once.
#[derive(Debug, Clone)]
pub struct Gazetteer {
    districts: Vec<(String, String)>,
    /// Every name in one leftmost-first automaton, shortest names first: the leftmost mention
    /// wins and, of names starting at the same place, the shortest — what a search per name
    /// followed by the minimum of `(start, end)` gives, in one pass instead of nine (those
    /// nine substring searches were 1.9 % of `process`'s instructions).
    names: AhoCorasick,
}

static CHANGSHA: LazyLock<Gazetteer> = LazyLock::new(|| Gazetteer::new(&CHANGSHA_DISTRICTS));

impl Gazetteer {
    /// The nine districts of Changsha ([`CHANGSHA_DISTRICTS`]).
    pub fn changsha() -> &'static Gazetteer {
        &CHANGSHA
    }

    /// A gazetteer over `(code, name)` pairs, e.g. another city's districts from a config.
    pub fn new(districts: &[(&str, &str)]) -> Self {
        let mut names: Vec<&str> = districts.iter().map(|(_, name)| *name).collect();
        names.sort_by_key(|name| name.len());
        let names = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(names)
            .expect("district names build an automaton");
        Gazetteer {
            districts: districts
                .iter()
                .map(|(code, name)| (code.to_string(), name.to_string()))
                .collect(),
            names,
        }
    }

    /// The district name for an administrative code, if the city has it.
    pub fn name_for_code(&self, code: &str) -> Option<&str> {
        let code = code.trim();
        self.districts
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, name)| name.as_str())
    }

    /// The district named by a structured field, which holds either a code (`430111`) or a name
    /// (`雨花区`). A code the gazetteer does not know yields `None`, so the caller falls back to
    /// the address rather than publishing a bare number as a district.
    pub fn from_field<'x>(&'x self, value: &'x str) -> Option<&'x str> {
        let value = value.trim();
        if value.is_empty() {
            None
        } else if value.len() == 6 && value.bytes().all(|b| b.is_ascii_digit()) {
            self.name_for_code(value)
        } else {
            Some(value)
        }
    }

    /// The first district mentioned in free text (an address, a title, a message): a known name
    /// or an anonymised one, whichever comes first.
    pub fn find_in<'t>(&self, text: &'t str) -> Option<&'t str> {
        let known = self.names.find(text).map(|m| (m.start(), m.end()));
        let anonymised = ANONYMISED
            .captures(text)
            .and_then(|caps| caps.get(1))
            .map(|m| (m.start(), m.end()));
        let (start, end) = match (known, anonymised) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(&text[start..end])
    }

    /// The district of a record: its structured field when that names one, else the first of
    /// `texts` (address, title, text — in that order) that mentions one.
    pub fn district_of(&self, field: Option<&str>, texts: &[Option<&str>]) -> Option<String> {
        field
            .and_then(|value| self.from_field(value))
            .or_else(|| texts.iter().flatten().find_map(|text| self.find_in(text)))
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> &'static Gazetteer {
        Gazetteer::changsha()
    }

    #[test]
    fn codes_map_to_names() {
        assert_eq!(g().name_for_code("430111"), Some("雨花区"));
        assert_eq!(g().name_for_code("430182"), Some("宁乡市"));
        assert_eq!(g().name_for_code("430100"), None);
        assert_eq!(g().from_field(" 430104 "), Some("岳麓区"));
        assert_eq!(g().from_field("110101"), None);
        assert_eq!(g().from_field("雨花区"), Some("雨花区"));
        assert_eq!(g().from_field("  "), None);
    }

    #[test]
    fn known_names_are_found_in_text() {
        assert_eq!(g().find_in("长沙市开福区四方坪街道"), Some("开福区"));
        assert_eq!(g().find_in("浏阳市集里街道"), Some("浏阳市"));
        // The earliest mention wins.
        assert_eq!(g().find_in("家住天心区，单位在岳麓区"), Some("天心区"));
        assert_eq!(g().find_in("单位在岳麓区，家住天心区"), Some("岳麓区"));
    }

    #[test]
    fn anonymised_names_are_found_and_estates_are_not() {
        assert_eq!(g().find_in("A市A3区某某路"), Some("A3区"));
        assert_eq!(g().find_in("B6县城关镇"), Some("B6县"));
        assert_eq!(g().find_in("反映A7市12路公交"), Some("A7市"));
        assert_eq!(g().find_in("我们小区门口的路灯坏了"), None);
        assert_eq!(g().find_in("A市某小区"), None);
        assert_eq!(g().find_in("XA3区"), None, "glued to a longer ASCII word");
        assert_eq!(
            g().find_in("A123区"),
            None,
            "three digits is not the pattern"
        );
        assert_eq!(g().find_in("a3区"), None, "lowercase is not the pattern");
        assert_eq!(g().find_in("雨花区和A3区"), Some("雨花区"));
        assert_eq!(g().find_in("A3区和雨花区"), Some("A3区"));
    }

    #[test]
    fn field_then_address_then_text() {
        let text = Some("芙蓉区有人占道经营");
        assert_eq!(
            g().district_of(Some("430111"), &[Some("岳麓区麓山南路"), text]),
            Some("雨花区".into())
        );
        assert_eq!(
            g().district_of(Some("999999"), &[Some("岳麓区麓山南路"), text]),
            Some("岳麓区".into())
        );
        assert_eq!(
            g().district_of(None, &[None, Some("某小区"), text]),
            Some("芙蓉区".into())
        );
        assert_eq!(g().district_of(None, &[Some("某小区"), None]), None);
    }

    #[test]
    fn another_city_can_be_configured() {
        let table = [("110105", "朝阳区")];
        let beijing = Gazetteer::new(&table);
        assert_eq!(beijing.from_field("110105"), Some("朝阳区"));
        assert_eq!(beijing.find_in("雨花区"), None);
        assert_eq!(beijing.find_in("朝阳区三里屯"), Some("朝阳区"));
    }

    /// The first mention by a search per name, as `find_in` did before it had one automaton.
    fn first_name_by_separate_searches<'t>(g: &Gazetteer, text: &'t str) -> Option<&'t str> {
        g.districts
            .iter()
            .filter_map(|(_, name)| text.find(name.as_str()).map(|at| (at, at + name.len())))
            .min()
            .map(|(start, end)| &text[start..end])
    }

    #[test]
    fn of_names_starting_together_the_shortest_wins() {
        let table = [("2", "朝阳区"), ("1", "朝阳"), ("3", "阳区")];
        let g = Gazetteer::new(&table);
        assert_eq!(g.find_in("住在朝阳区"), Some("朝阳"));
        assert_eq!(g.find_in("阳区朝阳"), Some("阳区"));
    }

    proptest::proptest! {
        #[test]
        fn one_search_finds_what_a_search_per_name_finds(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "芙蓉区", "天心区", "岳麓区", "开福区", "雨花区", "望城区", "长沙县", "浏阳市",
                    "宁乡市", "长沙", "区", "县", "市", "雨花", "小区", "路口", "有人", "，", "a",
                    "朝阳", "朝阳区", "阳区",
                ]),
                0..12,
            )
        ) {
            let text: String = parts.concat();
            let overlapping = Gazetteer::new(&[("2", "朝阳区"), ("1", "朝阳"), ("3", "阳区")]);
            for g in [Gazetteer::changsha(), &overlapping] {
                let known = g.names.find(text.as_str()).map(|m| &text[m.start()..m.end()]);
                proptest::prop_assert_eq!(known, first_name_by_separate_searches(g, &text));
            }
        }
    }
}

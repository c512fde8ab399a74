//! Near-duplicate stories: the same news from several outlets with slightly different titles.
//!
//! Titles become token sets — character bigrams for Chinese, lower-cased words for Latin
//! text — and two titles are the same story when the Jaccard similarity of their sets reaches
//! the threshold. Candidate pairs come from prefix filtering (two sets that similar must share
//! one of their rarest tokens), so the work stays close to linear in the number of items
//! instead of comparing every pair.

use std::collections::HashSet;

use rustc_hash::{FxHashMap as HashMap, FxHashSet};

/// Similarity at or above which two titles are one story.
pub const DEFAULT_THRESHOLD: f64 = 0.6;

/// The tokens of a title.
pub fn tokens(title: &str) -> Vec<String> {
    let mut out: HashSet<String> = HashSet::new();
    let mut cjk_run: Vec<char> = Vec::new();
    let mut word = String::new();
    let flush_cjk = |run: &mut Vec<char>, out: &mut HashSet<String>| {
        if run.len() == 1 {
            out.insert(run[0].to_string());
        }
        for pair in run.windows(2) {
            out.insert(pair.iter().collect());
        }
        run.clear();
    };
    for c in title.chars().map(|c| match c {
        '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
        _ => c,
    }) {
        if is_cjk(c) {
            if !word.is_empty() {
                out.insert(std::mem::take(&mut word));
            }
            cjk_run.push(c);
        } else if c.is_alphanumeric() || c == '.' && !word.is_empty() {
            flush_cjk(&mut cjk_run, &mut out);
            word.extend(c.to_lowercase());
        } else {
            flush_cjk(&mut cjk_run, &mut out);
            if !word.is_empty() {
                out.insert(std::mem::take(&mut word).trim_end_matches('.').to_string());
            }
        }
    }
    flush_cjk(&mut cjk_run, &mut out);
    if !word.is_empty() {
        out.insert(word.trim_end_matches('.').to_string());
    }
    out.remove("");
    let mut v: Vec<String> = out.into_iter().collect();
    v.sort();
    v
}

/// `tokens` as hashes, without allocating a string per token.
fn token_hashes(title: &str) -> Vec<u64> {
    use std::hash::{BuildHasher, Hasher};
    let state = rustc_hash::FxBuildHasher;
    let hash_str = |s: &str| {
        let mut h = state.build_hasher();
        h.write(s.as_bytes());
        h.finish()
    };
    let mut out: Vec<u64> = tokens(title).iter().map(|t| hash_str(t)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xf900..=0xfaff | 0x20000..=0x2ffff)
}

fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    // Both sorted.
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - common;
    if union == 0 {
        0.0
    } else {
        common as f64 / union as f64
    }
}

/// The numbers a title states (`15`, `0.5`, `2026`). Two reports of one story state the same
/// figures; titles that differ only in their figures are different news.
fn figures(title: &str) -> Vec<&str> {
    let mut v: Vec<&str> = title
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|t| t.trim_matches('.'))
        .filter(|t| t.bytes().any(|b| b.is_ascii_digit()))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Groups titles into stories: returns, for each title, the index of its group's first member.
pub fn cluster(titles: &[&str], threshold: f64) -> Vec<usize> {
    let n = titles.len();
    let numbers: Vec<Vec<&str>> = titles.iter().map(|t| figures(t)).collect();
    // Token ids, numbered from rarest to most frequent so that prefixes hold rare tokens.
    let token_sets: Vec<Vec<u64>> = titles.iter().map(|t| token_hashes(t)).collect();
    let mut freq: HashMap<u64, u32> = HashMap::default();
    for set in &token_sets {
        for t in set {
            *freq.entry(*t).or_default() += 1;
        }
    }
    let mut order: Vec<(u64, u32)> = freq.into_iter().collect();
    order.sort_unstable_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    let ids: HashMap<u64, u32> = order
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (*t, i as u32))
        .collect();
    let sets: Vec<Vec<u32>> = token_sets
        .iter()
        .map(|set| {
            let mut v: Vec<u32> = set.iter().filter_map(|t| ids.get(t).copied()).collect();
            v.sort_unstable();
            v
        })
        .collect();

    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }

    let mut index: HashMap<u32, Vec<usize>> = HashMap::default();
    let mut candidates: FxHashSet<usize> = FxHashSet::default();
    for (i, set) in sets.iter().enumerate() {
        if set.is_empty() {
            continue;
        }
        let prefix = set.len() - ((threshold * set.len() as f64).ceil() as usize) + 1;
        candidates.clear();
        for tok in &set[..prefix.min(set.len())] {
            if let Some(list) = index.get(tok) {
                candidates.extend(list.iter().copied());
            }
        }
        for &j in &candidates {
            // Sizes too different cannot reach the threshold.
            let (small, large) = if sets[j].len() < set.len() {
                (sets[j].len(), set.len())
            } else {
                (set.len(), sets[j].len())
            };
            if (small as f64) < threshold * large as f64 {
                continue;
            }
            let figures_agree =
                numbers[i].is_empty() || numbers[j].is_empty() || numbers[i] == numbers[j];
            if figures_agree && jaccard(set, &sets[j]) >= threshold {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
        for tok in &set[..prefix.min(set.len())] {
            index.entry(*tok).or_default().push(i);
        }
    }
    (0..n).map(|i| find(&mut parent, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_story_different_outlets() {
        let titles = [
            "央行宣布下调存款准备金率0.5个百分点",
            "【快讯】央行宣布下调存款准备金率0.5个百分点",
            "央行宣布下调存款准备金率0.5个百分点 释放长期资金",
            "贵州茅台发布三季度业绩预告，净利润同比增长15%",
            "贵州茅台发布三季度业绩预告，净利润同比增长20%",
            "Fed holds rates steady, signals cuts next year",
            "Fed holds rates steady and signals cuts next year",
            "ECB raises rates again",
        ];
        let groups = cluster(&titles, DEFAULT_THRESHOLD);
        assert_eq!(groups[0], 0);
        assert_eq!(groups[1], 0);
        assert_eq!(groups[2], 0);
        assert_eq!(groups[3], 3);
        assert_eq!(groups[4], 4, "different figures, different news");
        assert_eq!(groups[5], 5);
        assert_eq!(groups[6], 5);
        assert_eq!(groups[7], 7);
    }

    #[test]
    fn tokens_mix_bigrams_and_words() {
        assert_eq!(tokens("A股 收涨 AAPL.O"), ["a", "aapl.o", "收涨", "股"]);
    }
}
